import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command, Option, CommanderError } from 'commander';
import dbus from 'dbus-next';
import { asKagomeError, DBUS_ERROR_PREFIX, KagomeError } from '../lib/errors.js';
import { pathsFromEnv } from '../lib/runtime/paths.js';
import { CageStore } from '../lib/cage/store.js';
import {
  BACKENDS,
  CLIPBOARD_POLICIES,
  DEFAULT_IMAGE,
  DISPLAYS,
  NETWORKS,
  SOUND_POLICIES,
  type BackendKind,
  type ClipboardDirection,
  type DisplayKind,
  type NetworkMode,
  type OpenLinksPolicy,
  type SoundPolicy,
} from '../lib/cage/config.js';
import { checkCageName } from '../lib/cage/name.js';
import { hostFacts, notifyCall } from '../lib/service.js';
import { startService } from './daemon.js';
import { stderrLogger } from '../lib/log.js';
import { formatBytes, limitsSupport } from '../lib/runtime/cgroup.js';
import { removeSetup, setup } from '../lib/setup.js';
import { diagnose } from '../lib/doctor.js';
import { enterHelper } from '../lib/backends/enter-helper.js';
import { connectSessionBus } from '../lib/bus.js';
import { BusNotifier } from '../lib/notify.js';
import {
  buildRootfs,
  defaultEngine,
  importImage,
  DEFAULT_MIRROR,
  DEFAULT_RECIPE,
  DEFAULT_SUITE,
  IMAGE_ENGINES,
  type ImageEngine,
} from '../lib/image/build.js';
import { BuildReport } from '../lib/image/report.js';
import { O_PATH } from '../lib/grants/host-file.js';
import { closeInheritedFds } from '../lib/runtime/fds.js';
import { appShadows } from '../lib/apps.js';
import type { AppShadows } from '../lib/desktop/app-shadows.js';
import { KAGOME_OPEN } from '../lib/apps.js';
import { baseDirs } from '../xdg/basedirs.js';
import {
  FILE_MANAGERS,
  installFileManagerActions,
  removeFileManagerActions,
  type SyncReport,
} from '../lib/desktop/file-manager-actions.js';
import { kagomeClient, type KagomeClient } from '../dbus/client.js';
import type { GrantTuple } from '../dbus/contract.js';

// The kagome command. Cage files are read and written directly (no service needed); anything
// about running cages goes through the service on the session bus, which D-Bus activation
// starts when it is not running.

const env = process.env;

function store(): CageStore {
  const paths = pathsFromEnv(env);
  return new CageStore(paths.cagesDir, { hostHome: hostFacts(env).home, homesDir: paths.homesDir });
}

function shadows(s: CageStore): AppShadows {
  return appShadows(env, s, (m) => process.stderr.write(`kagome: warning: ${m}\n`));
}

/** How the memory limit is held for a cage of this backend on this machine, for `cage show`. */
function memoryEnforcement(backend: BackendKind): string {
  if (backend === 'lxd') return ' (held by LXD)';
  if (backend !== 'bubblewrap')
    return ' (held by the engine, where it can: rootless podman needs cgroup v2)';
  const support = limitsSupport();
  return support.how === 'none'
    ? ` (not held on this machine: ${support.why})`
    : ` (held through a ${support.how})`;
}

/** Where a cage's links go, in words (README "Links from cages"). */
function describeLinks(policy: OpenLinksPolicy): string {
  if (policy.startsWith('cage:')) return `into the cage ${policy.slice('cage:'.length)}`;
  switch (policy) {
    case 'caged-default':
      return "with the host's default program, only when that is in a cage";
    case 'host':
      return "with the host's default program, caged or not";
    case 'ask':
      return 'asked each time on the host: a cage with a browser, or nowhere';
    case 'ask-with-host':
      return "asked each time on the host: a cage with a browser, the host's default program, or nowhere";
    case 'none':
      return 'refused';
    default:
      return policy;
  }
}

function print(data: unknown, json: boolean, human: () => string): void {
  process.stdout.write(json ? JSON.stringify(data, null, 2) + '\n' : human());
}

type Variant = InstanceType<typeof dbus.Variant>;

async function withService<T>(fn: (kagome: KagomeClient) => Promise<T>): Promise<T> {
  const bus = await connectSessionBus(env);
  // dbus-next leaves a call pending when the connection goes; the CLI then ended with Node's
  // exit code 13 (an unsettled top-level await) and no word. A lost bus is this call's error.
  let lost!: (e: unknown) => void;
  const dropped = new Promise<never>((_resolve, reject) => (lost = reject));
  dropped.catch(() => undefined);
  bus.on('error', (e) => lost(e));
  try {
    return await Promise.race([fn(kagomeClient(bus)), dropped]);
  } catch (e) {
    // A refusal of the CLI's own (such as --action without --entry) is not the bus failing.
    if (e instanceof KagomeError) throw e;
    const err = e as { type?: string; text?: string; message?: string };
    if (err.type?.startsWith(DBUS_ERROR_PREFIX)) {
      throw new KagomeError(err.type.slice(DBUS_ERROR_PREFIX.length) as never, err.text ?? '');
    }
    if (err.type) throw new KagomeError('Failed', `${err.type}: ${err.text ?? ''}`);
    throw new KagomeError(
      'Failed',
      `cannot reach the kagome service on the session bus (${err.message ?? String(e)}); is DBUS_SESSION_BUS_ADDRESS set?`,
    );
  } finally {
    bus.disconnect();
  }
}

/** An O_PATH descriptor: it proves the choice, not access (the service checks that). */
function openForGrant(file: string, follow: boolean): number {
  try {
    return fs.openSync(path.resolve(file), O_PATH | (follow ? 0 : fs.constants.O_NOFOLLOW));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new KagomeError('NoSuchFile', `${file} does not exist`);
    throw new KagomeError('NotPermitted', `cannot open ${file}: ${(e as Error).message}`);
  }
}

function printGrants(grants: GrantTuple[], json: boolean): void {
  const rows = grants.map(([id, inCage, host, writable, persistent]) => ({
    id,
    pathInCage: inCage.toString('utf8'),
    hostPath: host.toString('utf8'),
    writable,
    persistent,
  }));
  print(rows, json, () =>
    rows
      .map(
        (r) =>
          `${r.id}\t${r.writable ? 'rw' : 'ro'}${r.persistent ? ',persistent' : ''}\t${JSON.stringify(r.hostPath)} -> ${JSON.stringify(r.pathInCage)}\n`,
      )
      .join(''),
  );
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function unwrap(props: Record<string, Variant>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.value]));
}

export function buildProgram(): Command {
  const program = new Command('kagome')
    .description('Run desktop programs in cages (sandboxes) with native-looking windows')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('setup')
    .description(
      'start the service with the session: write the D-Bus activation file and the systemd user unit into your own folders (for a kagome not installed from its Debian package)',
    )
    .option('--remove', 'take away exactly what setup wrote')
    .option('--json', 'print JSON')
    .action((o: { remove?: boolean; json?: boolean }) => {
      const report = o.remove ? removeSetup(env) : setup(env);
      print(
        report,
        Boolean(o.json),
        () =>
          [...report.files.map((f) => `${f.action}: ${f.path} (${f.what})`), report.systemd].join(
            '\n',
          ) + '\n',
      );
    });

  program
    .command('doctor')
    .description(
      'say what this machine lacks for kagome: Debian packages, user namespaces, the portal, sound, limits; exits 1 if something needed is missing',
    )
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }) => {
      const findings = diagnose(env, enterHelper);
      const mark = { ok: 'ok     ', missing: 'MISSING', warning: 'warning' } as const;
      print(
        findings,
        Boolean(o.json),
        () =>
          findings
            .map((f) => `${mark[f.severity]} ${f.what}${f.fix ? `\n        → ${f.fix}` : ''}`)
            .join('\n') + '\n',
      );
      if (findings.some((f) => f.severity === 'missing')) process.exitCode = 1;
    });

  program
    .command('daemon')
    .description(
      'run the service: own io.kagome.Kagome on the session bus (started by D-Bus activation or systemd)',
    )
    .action(async () => {
      const log = stderrLogger();
      // The service holds every running cage's bridges and answers every launch: a bug hit by
      // one caller or one cage is logged, never allowed to end it for all of them.
      process.on('uncaughtException', (e) =>
        log.error(`unexpected error (the service goes on): ${e.stack ?? e.message}`),
      );
      process.on('unhandledRejection', (e) =>
        log.error(
          `unexpected rejection (the service goes on): ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`,
        ),
      );
      const closed = closeInheritedFds();
      if (closed.length) log.debug(`closed inherited descriptors ${closed.join(', ')}`);
      const service = await startService(env, log);
      const shutdown = (sig: string) => {
        log.info(`${sig}: leaving cages running; a new service will re-adopt them`);
        void service.stop({ stopCages: false }).finally(() => process.exit(0));
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    });

  program
    .command('launch')
    .description('run a program (or, with --entry, an installed application) in a cage')
    .argument('<cage>', 'cage name')
    .argument(
      '[args...]',
      'the command and its arguments, or with --entry the files and URIs to open',
    )
    .option(
      '--entry <desktop-id>',
      'an application by desktop file ID, e.g. org.gnome.gedit.desktop',
    )
    .option('--action <id>', "one of the application's desktop actions (with --entry)")
    // The default is described, not shown: the man page is made from this help.
    .addOption(
      new Option('--cwd <dir>', 'working directory').default(process.cwd(), 'the current one'),
    )
    .option(
      '--terminal',
      'run it in a terminal inside the cage (x-terminal-emulator or xterm); with no command, a shell',
    )
    .action(
      async (
        cage: string,
        args: string[],
        o: { entry?: string; action?: string; cwd: string; terminal?: boolean },
      ) => {
        const options: Record<string, Variant> = { cwd: new dbus.Variant('s', o.cwd) };
        if (o.terminal) {
          if (o.entry)
            throw new KagomeError(
              'InvalidArgument',
              '--terminal is for commands; an entry says itself whether it needs a terminal (Terminal=true)',
            );
          options.terminal = new dbus.Variant('b', true);
        }
        if (o.action) options.action = new dbus.Variant('s', o.action);
        const startupId = env.DESKTOP_STARTUP_ID ?? env.XDG_ACTIVATION_TOKEN;
        if (startupId) options['startup-id'] = new dbus.Variant('s', startupId);
        await withService(async (kagome) => {
          if (o.entry) await kagome.Launcher1.Launch(cage, o.entry, args, options);
          else {
            if (o.action) throw new KagomeError('InvalidArgument', '--action needs --entry');
            await kagome.Launcher1.LaunchCommand(cage, args, options);
          }
        });
      },
    );

  for (const [name, member, what] of [
    ['start', 'Start', 'start a cage without a program (pre-warm it)'],
    ['stop', 'Stop', 'stop a cage and every program in it'],
  ] as const) {
    program
      .command(name)
      .description(what)
      .argument('<cage>')
      .action(async (cage: string) => {
        checkCageName(cage);
        await withService((kagome) => kagome.Cages1[member](cage));
      });
  }

  const clipboard = program
    .command('clipboard')
    .description(
      "copy the clipboard once across a cage's wall (what Clipboard=ask is for); a notification says what crossed",
    );
  for (const [name, member, what] of [
    ['to-host', 'CopyToHost', "copy the cage's clipboard to the host's"],
    ['to-cage', 'CopyToCage', "copy the host's clipboard into the cage's"],
  ] as const) {
    clipboard
      .command(name)
      .description(what)
      .argument('<cage>')
      .option('--json', 'print JSON')
      .action(async (cage: string, o: { json?: boolean }) => {
        checkCageName(cage);
        const [kind, bytes] = await withService((kagome) => kagome.Clipboard1[member](cage));
        print(
          { cage, kind, bytes },
          Boolean(o.json),
          () =>
            `copied ${bytes} bytes of ${kind} ${name === 'to-host' ? `from cage ${cage} to the host` : `from the host into cage ${cage}`}\n`,
        );
      });
  }

  program
    .command('list')
    .description('list cages with their state, from the service')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const cages = await withService((kagome) => kagome.Cages1.List());
      const rows = Object.entries(cages).map(([name, p]) => ({ name, ...unwrap(p) }));
      print(rows, Boolean(o.json), () =>
        rows
          .map((r) => {
            const x = r as Record<string, unknown>;
            const bridges = `sound=${x.Sound}${x.SoundBridge === 'off' ? '' : `(${x.SoundBridge})`}\tclipboard=${x.Clipboard}${x.ClipboardBridge === 'off' ? '' : `(${x.ClipboardBridge})`}\tbus=${x.SessionBus}${x.SessionBusState === 'off' ? '' : `(${x.SessionBusState})`}`;
            return `${r.name}\t${x.State}\t${x.Backend}/${x.Display}\tnetwork=${x.Network}\tprograms=${x.Programs}\t${bridges}${x.Error ? `\t${x.Error}` : ''}\n`;
          })
          .join(''),
      );
    });

  program
    .command('open')
    .description(
      "give files to a cage and open them there: with --app, or each with the cage's default program for its type",
    )
    .argument('<cage>', 'cage name')
    .argument('<files...>', 'files (or file:// URIs); symbolic links are followed')
    .option('--app <desktop-id>', 'open them with this application, e.g. org.gnome.gedit.desktop')
    .option('--read-only', 'grant read-only even where you may write the files')
    .option('--persistent', 'keep the grants after the cage stops (until kagome revoke)')
    .action(
      async (
        cage: string,
        files: string[],
        o: { app?: string; readOnly?: boolean; persistent?: boolean },
      ) => {
        checkCageName(cage);
        const options: Record<string, Variant> = {};
        if (o.app) options.app = new dbus.Variant('s', o.app);
        if (o.readOnly) options.writable = new dbus.Variant('b', false);
        if (o.persistent) options.persistent = new dbus.Variant('b', true);
        const startupId = env.DESKTOP_STARTUP_ID ?? env.XDG_ACTIVATION_TOKEN;
        if (startupId) options['startup-id'] = new dbus.Variant('s', startupId);
        const uris = files.map((f) => (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(f) ? f : path.resolve(f)));
        await withService((kagome) => kagome.Files1.OpenURIs(cage, uris, options));
      },
    );

  program
    .command('grant')
    .description('make files visible in a cage (passed to the service as open files, not paths)')
    .argument('<cage>', 'cage name')
    .argument('<files...>', 'the files to grant')
    .option('--writable', 'let the cage write them (default: read-only)')
    .option('--persistent', 'keep the grants after the cage stops (until kagome revoke)')
    .option('--follow-symlinks', 'grant what a symbolic link points to (default: refuse links)')
    .option('--json', 'print JSON')
    .action(
      async (
        cage: string,
        files: string[],
        o: { writable?: boolean; persistent?: boolean; followSymlinks?: boolean; json?: boolean },
      ) => {
        checkCageName(cage);
        const fds = files.map((f) => openForGrant(f, Boolean(o.followSymlinks)));
        const options: Record<string, Variant> = {
          writable: new dbus.Variant('b', Boolean(o.writable)),
          persistent: new dbus.Variant('b', Boolean(o.persistent)),
        };
        try {
          const [grants] = await withService((kagome) =>
            kagome.Files1.GrantFiles(cage, fds, options),
          );
          printGrants(grants, Boolean(o.json));
        } finally {
          fds.forEach((fd) => fs.closeSync(fd));
        }
      },
    );

  program
    .command('grants')
    .description("list a cage's file grants")
    .argument('<cage>', 'cage name')
    .option('--json', 'print JSON')
    .action(async (cage: string, o: { json?: boolean }) => {
      checkCageName(cage);
      const grants = await withService((kagome) => kagome.Files1.ListGrants(cage));
      printGrants(grants, Boolean(o.json));
    });

  program
    .command('revoke')
    .description('end file grants (the files disappear from the cage at once)')
    .argument('<cage>', 'cage name')
    .argument('<ids...>', "grant ids, as 'kagome grants' shows them")
    .action(async (cage: string, ids: string[]) => {
      checkCageName(cage);
      await withService((kagome) => kagome.Files1.Revoke(cage, ids));
    });

  const cage = program.command('cage').description('create, inspect and remove cage files');

  cage
    .command('create')
    .description('write a new cage file')
    .argument('<name>')
    .addOption(new Option('--backend <backend>').choices([...BACKENDS]).default('bubblewrap'))
    .option(
      '--image <image>',
      `container backends: the image to run (default ${DEFAULT_IMAGE}, made by 'kagome image build')`,
    )
    .option('--remote <remote>', "lxd: an LXD remote from 'lxc remote list'")
    .addOption(new Option('--display <display>').choices([...DISPLAYS]).default('xpra'))
    .addOption(new Option('--network <network>').choices([...NETWORKS]).default('none'))
    .option('--home <dir>', 'persistent private home (default: ~/.local/share/kagome/homes/NAME)')
    .option('--ro <path[:in-cage]>', 'share a host path read-only (repeatable)', collect, [])
    .option('--rw <path[:in-cage]>', 'share a host path read-write (repeatable)', collect, [])
    .option('--env <NAME=VALUE>', 'environment variable (repeatable)', collect, [])
    .option(
      '--idle-stop <seconds>',
      'stop the cage this long after its last program exits (0: never)',
    )
    .option('--border <colour>', 'window border colour, #rrggbb or none')
    .addOption(
      new Option(
        '--sound <policy>',
        'sound: none, output (play only) or duplex (play and record); default output',
      ).choices([...SOUND_POLICIES]),
    )
    .addOption(
      new Option(
        '--clipboard <policy>',
        'clipboard: none, to-cage, to-host, both or ask (explicit copies); default ask',
      ).choices([...CLIPBOARD_POLICIES]),
    )
    .option('--description <text>')
    .option('--json', 'print JSON')
    .action(
      async (
        name: string,
        o: {
          backend: BackendKind;
          image?: string;
          remote?: string;
          display: DisplayKind;
          network: NetworkMode;
          home?: string;
          ro: string[];
          rw: string[];
          env: string[];
          idleStop?: string;
          border?: string;
          sound?: SoundPolicy;
          clipboard?: ClipboardDirection;
          description?: string;
          json?: boolean;
        },
      ) => {
        if (o.idleStop !== undefined && !/^\d+$/.test(o.idleStop))
          throw new KagomeError(
            'InvalidArgument',
            `--idle-stop takes a whole number of seconds, not ${JSON.stringify(o.idleStop)}`,
          );
        const file = await store().create(name, {
          backend: o.backend,
          ...(o.image !== undefined ? { image: o.image } : {}),
          ...(o.remote !== undefined ? { remote: o.remote } : {}),
          display: o.display,
          network: o.network,
          ...(o.home !== undefined ? { home: o.home } : {}),
          readOnly: o.ro,
          readWrite: o.rw,
          environment: o.env,
          ...(o.idleStop !== undefined ? { idleStop: Number(o.idleStop) } : {}),
          ...(o.border !== undefined ? { border: o.border } : {}),
          ...(o.sound !== undefined ? { sound: o.sound } : {}),
          ...(o.clipboard !== undefined ? { clipboard: o.clipboard } : {}),
          ...(o.description !== undefined ? { description: o.description } : {}),
        });
        print({ name, file }, Boolean(o.json), () => `created cage ${name}: ${file}\n`);
      },
    );

  cage
    .command('list')
    .description('list cage files and whether they are valid')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const { cages, problems } = await store().readAll();
      const rows = [
        ...cages.map((c) => ({
          name: c.name,
          valid: true,
          backend: c.backend,
          display: c.display,
          network: c.network,
          description: c.description,
          error: '',
        })),
        ...problems.map((p) => ({
          name: p.name,
          valid: false,
          backend: '',
          display: '',
          network: '',
          description: '',
          error: p.error.message,
        })),
      ].sort((a, b) => a.name.localeCompare(b.name));
      print(rows, Boolean(o.json), () =>
        rows
          .map((r) =>
            r.valid
              ? `${r.name}\t${r.backend}/${r.display}\tnetwork=${r.network}\t${r.description}\n`
              : `${r.name}\tINVALID\t${r.error}\n`,
          )
          .join(''),
      );
    });

  cage
    .command('show')
    .description("show a cage's settings, with defaults filled in")
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const c = await store().read(name);
      print(
        c,
        Boolean(o.json),
        () =>
          [
            `name: ${c.name}`,
            `description: ${c.description}`,
            `backend: ${c.backend}`,
            ...(c.image ? [`image: ${c.image}`] : []),
            ...(c.remote ? [`remote: ${c.remote}`] : []),
            `display: ${c.display}`,
            `network: ${c.network}`,
            `home: ${c.home}`,
            ...c.mounts.map(
              (m) => `mount: ${m.source} -> ${m.dest} (${m.writable ? 'read-write' : 'read-only'})`,
            ),
            ...Object.entries(c.environment).map(([k, v]) => `env: ${k}=${v}`),
            `idle stop: ${c.idleStopSeconds ? `${c.idleStopSeconds} s` : 'never'}`,
            `border: ${c.border ?? 'none'}`,
            `app name: ${c.appName}`,
            `sound: ${c.sound}`,
            `session bus: ${c.sessionBus === 'private' ? "private (a D-Bus session bus of the cage's own, at $XDG_RUNTIME_DIR/bus in the cage)" : c.sessionBus === 'portal' ? "portal (the cage's own bus, with the host's file chooser portal on it)" : 'none'}`,
            `open links: ${c.openLinks} (${c.sessionBus === 'portal' ? describeLinks(c.openLinks) : 'no portal: SessionBus=portal is needed'}), ${c.openLinksLimit ? `${c.openLinksLimit} in a row at most` : 'no limit'}`,
            `notifications: ${c.notifications}${c.sessionBus === 'portal' ? (c.notifications === 'portal' ? " (shown on the host, marked with the cage's name)" : ' (refused)') : ' (no portal: SessionBus=portal is needed)'}`,
            `tasks: ${c.tasksMax ? `at most ${c.tasksMax}` : 'no limit'}`,
            `memory: ${c.memoryMax ? `at most ${formatBytes(c.memoryMax)}${memoryEnforcement(c.backend)}` : 'no limit'}`,
            `nested sandboxes: ${c.nestedSandbox ? 'allowed' : 'refused'}`,
            `clipboard: ${c.clipboard.direction}, primary ${c.clipboard.primary ? 'on' : 'off'}, at most ${c.clipboard.maxBytes} bytes, ${c.clipboard.images ? 'text and images' : 'text only'}`,
          ].join('\n') + '\n',
      );
    });

  cage
    .command('validate')
    .description('check cage files; exits 1 if any has an error')
    .argument('[names...]', 'cages to check (default: all)')
    .option('--json', 'print JSON')
    .action(async (names: string[], o: { json?: boolean }) => {
      const s = store();
      const results: { name: string; valid: boolean; error: string }[] = [];
      if (names.length) {
        for (const n of names) {
          try {
            await s.read(n);
            results.push({ name: n, valid: true, error: '' });
          } catch (e) {
            results.push({ name: n, valid: false, error: asKagomeError(e).message });
          }
        }
      } else {
        const { cages, problems } = await s.readAll();
        results.push(
          ...cages.map((c) => ({ name: c.name, valid: true, error: '' })),
          ...problems.map((p) => ({ name: p.name, valid: false, error: p.error.message })),
        );
      }
      print(results, Boolean(o.json), () =>
        results.map((r) => (r.valid ? `${r.name}: ok\n` : `${r.error}\n`)).join(''),
      );
      if (results.some((r) => !r.valid)) process.exitCode = 1;
    });

  cage
    .command('remove')
    .description('remove a cage file (its home is kept; the path is printed)')
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const s = store();
      const config = await s.read(name).catch(() => undefined);
      if (!(await s.exists(name))) await s.remove(name); // the NoSuchCage error, before touching apps
      // Its programs leave the menus first, so no shadow is left pointing at a missing cage.
      const apps = await shadows(s).removeCage(name);
      const file = await s.remove(name);
      print(
        { name, file, home: config?.home ?? null, apps: apps.map((a) => a.entryId) },
        Boolean(o.json),
        () =>
          `removed ${file}${apps.length ? `\nits programs are back to normal in the menus: ${apps.map((a) => a.entryId).join(', ')}` : ''}${config ? `\nits home is kept: ${config.home}` : ''}\n`,
      );
    });

  const app = program
    .command('app')
    .description(
      'put installed programs in cages: their menu, dock and file-type launches then go through the cage',
    );

  app
    .command('add')
    .description('put a program in a cage (writes its shadow entry to ~/.local/share/applications)')
    .argument('<cage>')
    .argument('<desktop-id>', "the program's desktop file ID, e.g. firefox-esr.desktop")
    .option('--print', 'print the shadow entry instead of installing it')
    .option('--force', 'replace a shadow entry that was edited by hand')
    .option('--json', 'print JSON')
    .action(
      async (cage: string, id: string, o: { print?: boolean; force?: boolean; json?: boolean }) => {
        checkCageName(cage);
        const s = store();
        await s.read(cage);
        if (o.print) {
          process.stdout.write(await shadows(s).preview(cage, id));
          return;
        }
        const r = await shadows(s).add(cage, id, { force: Boolean(o.force) });
        print(r, Boolean(o.json), () => `${id} now starts in cage ${cage}: ${r.path}\n`);
      },
    );

  app
    .command('remove')
    .description('take a program out of a cage; with no cage left its menu entry is as it was')
    .argument('<cage>')
    .argument('<desktop-id>')
    .option('--json', 'print JSON')
    .action(async (cage: string, id: string, o: { json?: boolean }) => {
      checkCageName(cage);
      const r = await shadows(store()).remove(cage, id);
      print(
        r,
        Boolean(o.json),
        () =>
          `${id} is no longer in cage ${cage}` +
          (r.promoted
            ? `; it now starts in cage ${r.promoted.cage}`
            : r.restored
              ? `; your own entry is back: ${r.restored}`
              : '') +
          '\n',
      );
    });

  app
    .command('list')
    .description('list programs in cages')
    .argument('[cage]', 'only this cage')
    .option('--json', 'print JSON')
    .action(async (cage: string | undefined, o: { json?: boolean }) => {
      const rows = (await shadows(store()).list()).filter((r) => !cage || r.cage === cage);
      const note = {
        active: '',
        edited: '\t(edited by hand: not updated)',
        dormant: '\t(not installed: waiting for it to return)',
      };
      print(rows, Boolean(o.json), () =>
        rows.map((r) => `${r.cage}\t${r.entryId}\t${r.path}${note[r.state]}\n`).join(''),
      );
    });

  const integrate = program.command('integrate').description('hook kagome into the desktop');

  integrate
    .command('file-managers')
    .description(
      `add "Open in cage NAME" to the context menus of ${Object.values(FILE_MANAGERS).join(', ')} (files only; whether or not they are installed)`,
    )
    .option('--remove', "take kagome's actions out again (nothing else is touched)")
    .option(
      '--cage <names...>',
      'only these cages (default: all; on install, actions of cages that no longer exist go in any case)',
    )
    .option('--json', 'print JSON')
    .action(async (o: { remove?: boolean; cage?: string[]; json?: boolean }) => {
      const dirs = baseDirs(env);
      const opts = {
        dataHome: dirs.dataHome,
        configHome: dirs.configHome,
        configDirs: dirs.configDirs,
        kagomeOpen: KAGOME_OPEN,
      };
      const only = o.cage?.map(checkCageName);
      let report: SyncReport;
      if (o.remove) {
        report = await removeFileManagerActions(opts, only);
      } else {
        const s = store();
        const { cages, problems } = await s.readAll();
        // Actions of a cage whose file cannot be read now stay: it still exists, to be fixed.
        const existing = new Set([...cages.map((c) => c.name), ...problems.map((p) => p.name)]);
        const chosen = only ? await Promise.all(only.map((n) => s.read(n))) : cages;
        if (!only)
          for (const p of problems)
            process.stderr.write(
              `kagome: warning: cage ${p.name} was skipped: ${p.error.message}\n`,
            );
        report = await installFileManagerActions(
          opts,
          chosen.map((c) => ({ name: c.name, description: c.description })),
          existing,
        );
      }
      const problems = report.problems.map((p) => ({
        fileManager: p.fileManager,
        path: p.path,
        errorName: p.error.errorName,
        error: p.error.message,
      }));
      print({ changes: report.changes, problems }, Boolean(o.json), () => {
        if (report.changes.length === 0)
          return problems.length
            ? ''
            : o.remove
              ? 'there were no kagome actions to remove\n'
              : 'there are no cages: nothing to add\n';
        return report.changes
          .map((c) => {
            const verb = { written: 'wrote', removed: 'removed', unchanged: 'up to date:' }[
              c.change
            ];
            const notes = [
              c.fileManager === 'thunar' && c.change !== 'removed' && c.cages.length
                ? `actions of ${c.cages.join(', ')}`
                : '',
              c.takenOut?.length ? `took out those of ${c.takenOut.join(', ')}` : '',
            ].filter(Boolean);
            return `${FILE_MANAGERS[c.fileManager]}: ${verb} ${c.path}${notes.length ? ` (${notes.join('; ')})` : ''}\n`;
          })
          .join('');
      });
      for (const p of problems)
        process.stderr.write(
          `kagome: ${FILE_MANAGERS[p.fileManager]}: ${p.errorName}: ${p.error}\n`,
        );
      if (problems.length) process.exitCode = 1;
    });

  const image = program
    .command('image')
    .description('the base image of container cages (Backend=podman, docker, lxd)');
  image
    .command('build')
    .description(
      'build the base image from Debian packages with mmdebstrap and import it into the engine (a minute or more; shows progress)',
    )
    .addOption(
      new Option(
        '--engine <engine>',
        'where to import it (default: the first of podman, docker, lxd installed)',
      ).choices([...IMAGE_ENGINES]),
    )
    .option('--name <name>', 'the image name cage files give in Image=', DEFAULT_IMAGE)
    .option('--remote <remote>', "lxd: import into this LXD remote ('lxc remote list')")
    .option('--packages <file>', 'the recipe: one Debian package per line', DEFAULT_RECIPE)
    .option('--suite <suite>', 'the Debian release', DEFAULT_SUITE)
    .option('--mirror <url>', 'the Debian mirror', DEFAULT_MIRROR)
    .option('--keep-tar <file>', 'keep the root filesystem tarball here')
    .action(
      async (o: {
        engine?: ImageEngine;
        name: string;
        remote?: string;
        packages: string;
        suite: string;
        mirror: string;
        keepTar?: string;
      }) => {
        const engine = o.engine ?? defaultEngine();
        if (!engine)
          throw new KagomeError(
            'MissingProgram',
            "no container engine was found: install the Debian package 'podman' (or docker.io, or lxd), or give --engine",
          );
        if (o.remote && engine !== 'lxd')
          throw new KagomeError('InvalidArgument', '--remote is for --engine lxd');
        const bus = await connectSessionBus(env).catch(() => undefined);
        bus?.on('error', () => undefined);
        const report = new BuildReport(
          `kagome image ${o.name} (${engine})`,
          process.stdout,
          bus ? new BusNotifier(notifyCall(bus), stderrLogger()) : undefined,
        );
        const abort = new AbortController();
        process.once('SIGINT', () => abort.abort());
        const tar = o.keepTar ?? path.join(os.tmpdir(), `kagome-rootfs-${process.pid}.tar`);
        try {
          await buildRootfs({
            out: tar,
            packagesFile: o.packages,
            suite: o.suite,
            mirror: o.mirror,
            onProgress: (p) => report.update({ ...p, fraction: p.fraction * 0.85 }),
            signal: abort.signal,
          });
          report.step(`importing into ${engine}`, 0.86);
          await importImage({
            engine,
            tar,
            name: o.name,
            suite: o.suite,
            ...(o.remote ? { remote: o.remote } : {}),
          });
          report.step('done', 1);
          await report.finish({
            ok: true,
            message: `${o.name} is ready for Backend=${engine} cages`,
          });
          process.stdout.write(
            `\nbuilt ${o.name} for ${engine}${o.keepTar ? `; root filesystem kept at ${o.keepTar}` : ''}\n`,
          );
        } catch (e) {
          await report.finish({ ok: false, message: asKagomeError(e).message.split('\n')[0]! });
          throw e;
        } finally {
          bus?.disconnect();
          if (!o.keepTar) fs.rmSync(tar, { force: true, recursive: true });
        }
      },
    );

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    const err = asKagomeError(e);
    process.stderr.write(`kagome: ${err.errorName}: ${err.message}\n`);
    process.exitCode = 1;
  }
}
