import { KagomeError } from './errors.js';
import type { CageManager } from './cage/manager.js';
import type { Logger } from './log.js';
import { shown, type HostFile } from './grants/host-file.js';
import { contentTypeOf } from '../xdg/content-type.js';
import { appsForType, findEntryInView, type MimeView } from '../xdg/mime-apps.js';
import { parseExec } from '../xdg/exec.js';
import { LINK_FORWARDER_ID } from './link-forwarding.js';
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
      const id = await this.preferred(cage, type, cageView);
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

  /** The entry of the cage's default program for a type such as x-scheme-handler/https. */
  async appForType(cage: string, type: string): Promise<CageEntry> {
    const view = this.viewOf(cage);
    const id = await this.preferred(cage, type, view);
    const found = id ? await findEntryInView(id, view) : undefined;
    if (!id || !found)
      throw new KagomeError(
        'NoSuchApp',
        `cage "${cage}" has no program for ${type}; set a default in the cage's mimeapps.list`,
      );
    this.log.info(`cage ${cage}: ${type} opens with ${id}`);
    return { id, ...found };
  }

  /**
   * The cage's default for the type, unless another program for it already runs in the cage:
   * a person who opens a page in their Firefox cage means that Firefox, even where the cage's
   * rules rank Chromium first (both come from the host's /usr). Running programs are known by
   * the program their Exec line starts.
   */
  private async preferred(cage: string, type: string, view: MimeView): Promise<string | undefined> {
    // Never the entry that sends a portal cage's links out again (lib/link-forwarding.ts): a
    // link sent into the cage would go round.
    const ids = (await appsForType(type, view)).filter((id) => id !== LINK_FORWARDER_ID);
    if (ids.length < 2) return ids[0];
    const running = new Set(this.manager.programs(cage).map((p) => programName(p.argv[0] ?? '')));
    if (running.size === 0) return ids[0];
    for (const id of ids) {
      const entry = await findEntryInView(id, view);
      const exec = entry?.keyfile.get('Desktop Entry', 'Exec');
      let program = '';
      try {
        const first = exec ? parseExec(exec)[0] : undefined;
        program = typeof first === 'string' ? programName(first) : '';
      } catch {
        /* an entry whose Exec line does not parse is not the running one */
      }
      if (program && running.has(program)) {
        if (id !== ids[0])
          this.log.info(
            `cage ${cage}: ${id} runs there, so ${type} opens with it rather than the default ${ids[0]}`,
          );
        return id;
      }
    }
    return ids[0];
  }

  private viewOf(cage: string): MimeView {
    const view = this.manager.view(cage);
    if (!view)
      throw new KagomeError(
        'BackendFailed',
        `cage "${cage}" is not running, so its programs cannot be looked up`,
      );
    const env = view.env;
    const home = env.HOME ?? '/';
    const split = (v: string | undefined, dflt: string) =>
      (v || dflt).split(':').filter((d) => d.startsWith('/'));
    const cageView = {
      configDirs: [
        env.XDG_CONFIG_HOME || `${home}/.config`,
        ...split(env.XDG_CONFIG_DIRS, '/etc/xdg'),
      ],
      dataDirs: [
        env.XDG_DATA_HOME || `${home}/.local/share`,
        ...split(env.XDG_DATA_DIRS, '/usr/local/share:/usr/share'),
      ],
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

/** A program by its file name: /usr/lib/firefox-esr/firefox-esr and firefox-esr are one. */
function programName(argv0: string): string {
  return argv0.slice(argv0.lastIndexOf('/') + 1);
}
