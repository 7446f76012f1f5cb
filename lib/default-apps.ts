import { KagomeError } from './errors.js';
import type { CageManager } from './cage/manager.js';
import type { Logger } from './log.js';
import { shown, type HostFile } from './grants/host-file.js';
import { contentTypeOf } from '../xdg/content-type.js';
import { defaultAppFor, findEntryInView, type MimeView } from '../xdg/mime-apps.js';
import type { Keyfile } from '../xdg/keyfile.js';

// "Open in cage" without a program: each file opens with the cage's own default program for
// its type, chosen by the MIME-apps rules over the folders the cage sees (its private home's
// mimeapps.list, its /etc/xdg and /usr/share), read through the running cage's root on the
// host. The type is the host file's, by shared-mime-info (glob, then content), as GLib does.

export class CageDefaultApps {
  constructor(
    private readonly manager: CageManager,
    private readonly log: Logger,
  ) {}

  /**
   * The entry of each file's default program, read from the cage's own folders: the cage's
   * default may be a program only the cage has.
   */
  async appsFor(cage: string, files: readonly HostFile[]): Promise<CageEntry[]> {
    const cageView = this.viewOf(cage);
    const types = await Promise.all(files.map((f) => contentTypeOf(f.path)));
    const apps: CageEntry[] = [];
    for (const [i, type] of types.entries()) {
      const id = await defaultAppFor(type, cageView);
      const found = id ? await findEntryInView(id, cageView) : undefined;
      if (!id || !found) {
        throw new KagomeError(
          'NoSuchApp',
          `cage "${cage}" has no program for ${type} files such as ${shown(files[i]!.path)}; name one (kagome open ${cage} --app DESKTOP_ID), or set a default in the cage's mimeapps.list`,
        );
      }
      this.log.info(`cage ${cage}: ${type} opens with ${id}`);
      apps.push({ id, ...found });
    }
    return apps;
  }

  private viewOf(cage: string): MimeView {
    const view = this.manager.view(cage);
    if (!view) throw new KagomeError('BackendFailed', `cage "${cage}" is not running, so its programs cannot be looked up`);
    const env = view.env;
    const home = env.HOME ?? '/';
    const split = (v: string | undefined, dflt: string) => (v || dflt).split(':').filter((d) => d.startsWith('/'));
    const cageView = {
      configDirs: [env.XDG_CONFIG_HOME || `${home}/.config`, ...split(env.XDG_CONFIG_DIRS, '/etc/xdg')],
      dataDirs: [env.XDG_DATA_HOME || `${home}/.local/share`, ...split(env.XDG_DATA_DIRS, '/usr/local/share:/usr/share')],
      desktops: (env.XDG_CURRENT_DESKTOP ?? '').split(':').filter(Boolean),
      hostPath: (p: string) => view.hostPathOf(p) ?? p,
      warn: (m: string) => this.log.warn(`cage ${cage}: ${m}`),
    };
    return cageView;
  }
}

export interface CageEntry {
  id: string;
  /** the entry's path as the cage sees it (for %k) */
  path: string;
  keyfile: Keyfile;
}
