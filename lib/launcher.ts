import path from 'node:path';
import { KagomeError, asKagomeError } from './errors.js';
import { checkCageName } from './cage/name.js';
import { type CageManager, type LaunchOptions, type ProgramInfo } from './cage/manager.js';
import type { Notifier } from './notify.js';
import type { Logger } from './log.js';
import { parseExec, expandExec, pathToFileUri } from '../xdg/exec.js';
import type { Keyfile } from '../xdg/keyfile.js';

// A launch: an app (desktop entry, optionally one of its actions) or a plain command, run in a
// cage. The entry is always the original one, never kagome's own rewritten copy that hides it,
// and its Exec line is parsed and expanded per the Desktop Entry Specification, never by a shell.

const MAIN_GROUP = 'Desktop Entry';

/** Finds the original entry for an ID: never a shadow. */
export interface EntryLookup {
  lookup(id: string): Promise<{ id: string; path: string; keyfile: Keyfile } | undefined>;
}

export interface AppLaunch {
  cage: string;
  desktopId: string;
  /** files (absolute or relative to cwd) and URIs, as a file manager or `%U` would give them */
  uris: string[];
  action?: string;
  options: LaunchOptions;
}

const DESKTOP_ID = /^[A-Za-z0-9_.+@-]+\.desktop$/;
const URI_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;

export class Launcher {
  constructor(
    private readonly manager: CageManager,
    private readonly entries: EntryLookup,
    private readonly notifier: Notifier | undefined,
    private readonly log: Logger,
  ) {}

  async launchApp(req: AppLaunch): Promise<ProgramInfo[]> {
    return this.reporting(req.cage, req.desktopId, async () => {
      checkCageName(req.cage);
      if (!DESKTOP_ID.test(req.desktopId)) {
        throw new KagomeError('InvalidArgument', `"${req.desktopId}" is not a desktop file ID: it looks like org.example.App.desktop`);
      }
      const found = await this.entries.lookup(req.desktopId);
      if (!found) {
        throw new KagomeError('NoSuchApp', `no application "${req.desktopId}" is installed (looked in the applications folders of XDG_DATA_HOME and XDG_DATA_DIRS)`);
      }
      const kf = found.keyfile;
      let group = MAIN_GROUP;
      if (req.action !== undefined) {
        const actions = kf.getList(MAIN_GROUP, 'Actions') ?? [];
        if (!actions.includes(req.action) || !kf.hasGroup(`Desktop Action ${req.action}`)) {
          throw new KagomeError('NoSuchApp', `"${req.desktopId}" has no action "${req.action}"${actions.length ? `; it has: ${actions.join(', ')}` : ''}`);
        }
        group = `Desktop Action ${req.action}`;
      }
      const exec = kf.get(group, 'Exec');
      if (!exec) throw new KagomeError('InvalidDesktopEntry', `${found.path}: [${group}] has no Exec key, so there is nothing to run`);
      const cwd = kf.get(MAIN_GROUP, 'Path') || req.options.cwd;
      const uris = req.uris.map((u) => toUri(u, req.options.cwd));
      const argvs = expandExec(parseExec(exec), {
        uris,
        icon: kf.get(MAIN_GROUP, 'Icon'),
        name: kf.get(MAIN_GROUP, 'Name'),
        desktopFile: found.path,
      });
      const programs: ProgramInfo[] = [];
      for (const argv of argvs) {
        programs.push(await this.manager.launchCommand(req.cage, argv, { ...req.options, ...(cwd ? { cwd } : {}) }));
      }
      return programs;
    });
  }

  async launchCommand(cage: string, argv: string[], options: LaunchOptions): Promise<ProgramInfo> {
    return this.reporting(cage, argv[0] ?? '', () => this.manager.launchCommand(cage, argv, options));
  }

  /** A failed launch is also told to the person at the screen, who may not see the D-Bus error. */
  private async reporting<T>(cage: string, what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err = asKagomeError(e);
      this.log.warn(`launch of ${JSON.stringify(what)} in cage ${JSON.stringify(cage)} failed: ${err.errorName}: ${err.message}`);
      if (err.errorName !== 'InvalidArgument') {
        void this.notifier?.notify({ summary: `Could not start ${what || 'the program'} in cage ${cage}`, body: err.message, urgency: 'normal' });
      }
      throw err;
    }
  }
}

/** Paths become file:// URIs (relative ones against the caller's directory); URIs pass as they are. */
export function toUri(arg: string, cwd: string | undefined): string {
  if (URI_SCHEME.test(arg) && !arg.startsWith('/')) return arg;
  const abs = path.isAbsolute(arg) ? arg : path.resolve(cwd ?? '/', arg);
  return pathToFileUri(abs);
}
