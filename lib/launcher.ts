import path from 'node:path';
import { KagomeError, asKagomeError } from './errors.js';
import { checkCageName } from './cage/name.js';
import { type CageManager, type LaunchOptions, type ProgramInfo } from './cage/manager.js';
import type { Notifier } from './notify.js';
import type { Logger } from './log.js';
import {
  parseExec,
  expandExec,
  pathToFileUri,
  fileUriToPathBytes,
  pathBytesToFileUri,
} from '../xdg/exec.js';
import {
  openHostPaths,
  closeHostFiles,
  type HostFile,
  type WriteWish,
} from './grants/host-file.js';
import type { FileGrants, Grant } from './grants/registry.js';
import type { Keyfile } from '../xdg/keyfile.js';
import { programLogTail } from './cage/program-log.js';

// A launch: an app (desktop entry, optionally one of its actions) or a plain command, run in a
// cage. The entry is always the original one, never kagome's own rewritten copy that hides it,
// and its Exec line is parsed and expanded per the Desktop Entry Specification, never by a shell.

const MAIN_GROUP = 'Desktop Entry';
/** A program that fails this soon after its launch is reported (its window most likely never came). */
const EARLY_EXIT_MS = 10_000;

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

/** The entry of the program a cage would open each file with (a desktop's default app), from the cage's own folders. */
export interface DefaultApps {
  appsFor(
    cage: string,
    files: readonly HostFile[],
  ): Promise<{ id: string; path: string; keyfile: Keyfile }[]>;
  appForType(cage: string, type: string): Promise<{ id: string; path: string; keyfile: Keyfile }>;
}

export interface FileLaunchOptions extends LaunchOptions {
  /** grant files read-write: true, false, or 'auto' (read-write where the user may write) */
  writable?: WriteWish;
  persistent?: boolean;
}

export interface OpenResult {
  grants: Grant[];
  programs: ProgramInfo[];
}

export class Launcher {
  constructor(
    private readonly manager: CageManager,
    private readonly entries: EntryLookup,
    private readonly notifier: Notifier | undefined,
    private readonly log: Logger,
    private readonly files?: { grants: FileGrants; defaults: DefaultApps },
  ) {
    manager.on('program', (p: ProgramInfo, event: string) => {
      if (event === 'exited') this.reportEarlyExit(p);
    });
  }

  /**
   * A program that fails within seconds of its launch has usually shown nothing: a desktop
   * user clicked an icon and saw no window. The service log and a notification then name it,
   * with its status and the last lines it printed, and where the rest is.
   */
  private reportEarlyExit(p: ProgramInfo): void {
    const code = p.exitCode ?? 0;
    if (
      code === 0 ||
      Date.now() - p.startedAt.getTime() > EARLY_EXIT_MS ||
      this.manager.isStopping(p.cage)
    )
      return;
    const program = path.basename(p.argv[0] ?? 'the program');
    const status = code > 128 ? `was killed by signal ${code - 128}` : `exited with status ${code}`;
    const tail = p.log ? programLogTail(p.log) : '';
    const where = p.log ? `Its output: ${p.log.file}` : '';
    this.log.warn(
      `cage ${p.cage}: ${program} ${status} right after its launch${tail ? `; its last lines:\n${tail}` : ''}`,
    );
    void this.notifier?.notify({
      summary: `${program} in cage ${p.cage} ${status}`,
      body: [tail, where].filter(Boolean).join('\n\n'),
      urgency: 'normal',
    });
  }

  /** Launch an app with files and URIs: local files are granted to the cage and passed as it sees them. */
  async launchApp(req: AppLaunch & { options: FileLaunchOptions }): Promise<ProgramInfo[]> {
    return this.reporting(req.cage, req.desktopId, async () => {
      checkCageName(req.cage);
      const found = await this.findEntry(req.desktopId, req.action);
      const args = req.uris.map((u) => toUri(u, req.options.cwd));
      // Files are opened (and so checked) before the cage starts: a bad file costs nothing.
      const local = args.map((u) => fileUriToPathBytes(u));
      const hostFiles = openHostPaths(
        local.filter((p): p is Buffer => p !== undefined),
        { followSymlinks: true, writable: req.options.writable ?? 'auto' },
      );
      let uris = args;
      if (hostFiles.length) {
        const grants = await this.grant(req.cage, hostFiles, req.options.persistent ?? false);
        let k = 0;
        uris = args.map((u, i) => (local[i] ? pathBytesToFileUri(grants[k++]!.pathInCage) : u));
      }
      return this.runEntry(req.cage, found, uris, req.options);
    });
  }

  /**
   * Grant files to a cage and open them: with the given app, or each with the cage's default
   * program for its type. The files' descriptors are consumed.
   */
  async openFiles(
    cage: string,
    hostFiles: HostFile[],
    opts: FileLaunchOptions & { app?: string; open: boolean },
  ): Promise<OpenResult> {
    return this.reporting(cage, opts.app ?? 'files', async () => {
      try {
        checkCageName(cage);
        const found = opts.app ? await this.findEntry(opts.app, undefined) : undefined;
        // Which program opens what is decided first: a file nothing in the cage can open is
        // an error before anything is granted.
        let apps: FoundEntry[] = [];
        if (opts.open && !found) {
          if (!this.files)
            throw new KagomeError(
              'NotSupported',
              'opening files needs the file grant store, which this service runs without',
            );
          await this.manager.start(cage);
          apps = (await this.files.defaults.appsFor(cage, hostFiles)).map((e) => ({
            ...e,
            group: MAIN_GROUP,
          }));
        }
        const grants = await this.grant(cage, hostFiles, opts.persistent ?? false);
        hostFiles = [];
        const programs: ProgramInfo[] = [];
        if (!opts.open) return { grants, programs };
        const uris = grants.map((g) => pathBytesToFileUri(g.pathInCage));
        if (found) {
          programs.push(...(await this.runEntry(cage, found, uris, opts)));
        } else {
          // One launch per program, with all of its files, as a file manager does.
          for (const id of new Set(apps.map((a) => a.id))) {
            const entry = apps.find((a) => a.id === id)!;
            programs.push(
              ...(await this.runEntry(
                cage,
                entry,
                uris.filter((_, i) => apps[i]!.id === id),
                opts,
              )),
            );
          }
        }
        return { grants, programs };
      } finally {
        closeHostFiles(hostFiles);
      }
    });
  }

  /**
   * Opens a link (checked by the caller: lib/links.ts) with the cage's own default program for
   * its scheme. The URI is passed as it is: it names no local file, so nothing is granted.
   */
  async openLink(cage: string, uri: string): Promise<ProgramInfo[]> {
    return this.reporting(cage, 'a link', async () => {
      checkCageName(cage);
      if (!this.files)
        throw new KagomeError(
          'NotSupported',
          "opening links needs the cages' default programs, which this service runs without",
        );
      const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(uri)?.[1]?.toLowerCase();
      if (!scheme || scheme === 'file')
        throw new KagomeError(
          'InvalidArgument',
          'a link opened in a cage names a scheme other than file:',
        );
      await this.manager.start(cage);
      const entry = await this.files.defaults.appForType(cage, `x-scheme-handler/${scheme}`);
      return this.runEntry(cage, { ...entry, group: MAIN_GROUP }, [uri], {});
    });
  }

  async launchCommand(cage: string, argv: string[], options: LaunchOptions): Promise<ProgramInfo> {
    return this.reporting(cage, argv[0] ?? '', () =>
      this.manager.launchCommand(cage, argv, options),
    );
  }

  private async grant(cage: string, hostFiles: HostFile[], persistent: boolean): Promise<Grant[]> {
    try {
      if (!this.files)
        throw new KagomeError(
          'NotSupported',
          'this service runs without a file grant store, so files cannot be given to cages',
        );
      // A grant that ends when the cage stops needs the cage running; a persistent one does not.
      if (!persistent) await this.manager.start(cage);
      return await this.files.grants.add(cage, hostFiles, { persistent });
    } finally {
      closeHostFiles(hostFiles);
    }
  }

  private async findEntry(desktopId: string, action: string | undefined): Promise<FoundEntry> {
    if (!DESKTOP_ID.test(desktopId)) {
      throw new KagomeError(
        'InvalidArgument',
        `"${desktopId}" is not a desktop file ID: it looks like org.example.App.desktop`,
      );
    }
    const found = await this.entries.lookup(desktopId);
    if (!found) {
      throw new KagomeError(
        'NoSuchApp',
        `no application "${desktopId}" is installed (looked in the applications folders of XDG_DATA_HOME and XDG_DATA_DIRS)`,
      );
    }
    const kf = found.keyfile;
    let group = MAIN_GROUP;
    if (action !== undefined) {
      const actions = kf.getList(MAIN_GROUP, 'Actions') ?? [];
      if (!actions.includes(action) || !kf.hasGroup(`Desktop Action ${action}`)) {
        throw new KagomeError(
          'NoSuchApp',
          `"${desktopId}" has no action "${action}"${actions.length ? `; it has: ${actions.join(', ')}` : ''}`,
        );
      }
      group = `Desktop Action ${action}`;
    }
    return { ...found, group };
  }

  private async runEntry(
    cage: string,
    found: FoundEntry,
    uris: string[],
    options: LaunchOptions,
  ): Promise<ProgramInfo[]> {
    const kf = found.keyfile;
    const exec = kf.get(found.group, 'Exec');
    if (!exec)
      throw new KagomeError(
        'InvalidDesktopEntry',
        `${found.path}: [${found.group}] has no Exec key, so there is nothing to run`,
      );
    const cwd = kf.get(MAIN_GROUP, 'Path') || options.cwd;
    const argvs = expandExec(parseExec(exec), {
      uris,
      icon: kf.get(MAIN_GROUP, 'Icon'),
      name: kf.get(MAIN_GROUP, 'Name'),
      desktopFile: found.path,
    });
    const launch: LaunchOptions = {
      ...(options.startupId ? { startupId: options.startupId } : {}),
      ...(cwd ? { cwd } : {}),
      ...(kf.getBoolean(MAIN_GROUP, 'Terminal') ? { terminal: true } : {}),
    };
    const programs: ProgramInfo[] = [];
    for (const argv of argvs) programs.push(await this.manager.launchCommand(cage, argv, launch));
    return programs;
  }

  /** A failed launch is also told to the person at the screen, who may not see the D-Bus error. */
  private async reporting<T>(cage: string, what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err = asKagomeError(e);
      this.log.warn(
        `launch of ${JSON.stringify(what)} in cage ${JSON.stringify(cage)} failed: ${err.errorName}: ${err.message}`,
      );
      if (err.errorName !== 'InvalidArgument') {
        void this.notifier?.notify({
          summary: `Could not start ${what || 'the program'} in cage ${cage}`,
          body: err.message,
          urgency: 'normal',
        });
      }
      throw err;
    }
  }
}

type FoundEntry = { id: string; path: string; keyfile: Keyfile; group: string };

/** Paths become file:// URIs (relative ones against the caller's directory); URIs pass as they are. */
export function toUri(arg: string, cwd: string | undefined): string {
  if (URI_SCHEME.test(arg) && !arg.startsWith('/')) return arg;
  const abs = path.isAbsolute(arg) ? arg : path.resolve(cwd ?? '/', arg);
  return pathToFileUri(abs);
}
