import dbus from 'dbus-next';
import { KagomeError, asKagomeError, DBUS_ERROR_PREFIX } from '../lib/errors.js';
import type { CageInfo, CageManager, LaunchOptions, ProgramInfo } from '../lib/cage/manager.js';
import type { Launcher, OpenResult } from '../lib/launcher.js';
import type { FilesOptions, FilesService } from '../lib/files.js';
import type { Grant } from '../lib/grants/registry.js';
import { closeFds } from '../lib/grants/host-file.js';
import type { ClipboardCopies } from '../lib/bridges/clipboard.js';
import { checkCageName } from '../lib/cage/name.js';
import {
  BUS_NAME,
  CAGE_PORTAL_IFACE,
  CAGES_IFACE,
  CLIPBOARD_IFACE,
  FILES_IFACE,
  LAUNCHER_IFACE,
  OBJECT_PATH,
  memberTable,
  methodSpec,
  signatureOf,
  type GrantTuple,
  type InterfaceName,
  type MethodArgs,
  type MethodName,
  type MethodResult,
  type SignalArgs,
  type SignalName,
} from './contract.js';

// The D-Bus face of the service. The contract (and its documentation) is the XML beside this
// file, mirrored in contract.ts; these objects only check arguments and call into lib/.
// Nothing here decides anything.

const { Interface } = dbus.interface;
type Variant = InstanceType<typeof dbus.Variant>;

export function programPath(p: ProgramInfo): string {
  return `${OBJECT_PATH}/programs/${p.id}`;
}

const MAX_ERROR_TEXT = 1000;

function toDBusError(e: unknown): InstanceType<typeof dbus.DBusError> {
  const err = asKagomeError(e);
  // Messages quote what the caller sent; a 100 KB argument is not echoed back whole.
  const text =
    err.message.length > MAX_ERROR_TEXT ? `${err.message.slice(0, MAX_ERROR_TEXT)}…` : err.message;
  return new dbus.DBusError(err.dbusName, text);
}

async function guarded<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toDBusError(e);
  }
}

const OPTION_TYPES: Record<string, string> = {
  cwd: 's',
  action: 's',
  'startup-id': 's',
  'read-only': 'b',
  terminal: 'b',
};
const APP_ONLY = new Set(['action', 'read-only']);
// A desktop entry says itself whether it needs a terminal (Terminal=true).
const COMMAND_ONLY = new Set(['terminal']);

/** Checks option names and types; returns the values by name. */
function checkOptions(
  options: Record<string, Variant>,
  types: Record<string, string>,
): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = {};
  for (const [key, v] of Object.entries(options)) {
    const type = types[key];
    if (!type)
      throw new KagomeError(
        'InvalidArgument',
        `unknown option "${key}"; known options: ${Object.keys(types).join(', ')}`,
      );
    if (v.signature !== type)
      throw new KagomeError(
        'InvalidArgument',
        `option "${key}" must be of type ${type}, not ${v.signature}`,
      );
    out[key] = v.value as string | boolean;
  }
  return out;
}

function readOptions(
  options: Record<string, Variant>,
  forApp: boolean,
): LaunchOptions & { action?: string; readOnly?: boolean } {
  const types = Object.fromEntries(
    Object.entries(OPTION_TYPES).filter(([k]) =>
      forApp ? !COMMAND_ONLY.has(k) : !APP_ONLY.has(k),
    ),
  );
  const o = checkOptions(options, types);
  const out: LaunchOptions & { action?: string; readOnly?: boolean } = {};
  if (o.cwd !== undefined) {
    const cwd = o.cwd as string;
    if (!cwd.startsWith('/'))
      throw new KagomeError(
        'InvalidArgument',
        `option "cwd" must be an absolute path, not ${JSON.stringify(cwd)}`,
      );
    out.cwd = cwd;
  }
  if (o.action !== undefined) out.action = o.action as string;
  if (o['startup-id'] !== undefined) out.startupId = o['startup-id'] as string;
  if (o['read-only'] !== undefined) out.readOnly = o['read-only'] as boolean;
  if (o.terminal !== undefined) out.terminal = o.terminal as boolean;
  return out;
}

const FILES_OPTION_TYPES: Record<string, string> = {
  writable: 'b',
  persistent: 'b',
  open: 'b',
  app: 's',
  'follow-symlinks': 'b',
  'startup-id': 's',
};

function readFilesOptions(options: Record<string, Variant>, byPath: boolean): FilesOptions {
  const types = Object.fromEntries(
    Object.entries(FILES_OPTION_TYPES).filter(([k]) => byPath || k !== 'follow-symlinks'),
  );
  const o = checkOptions(options, types);
  const out: FilesOptions = {};
  if (o.writable !== undefined) out.writable = o.writable as boolean;
  if (o.persistent !== undefined) out.persistent = o.persistent as boolean;
  if (o.open !== undefined) out.open = o.open as boolean;
  if (o.app !== undefined) out.app = o.app as string;
  if (o['follow-symlinks'] !== undefined) out.followSymlinks = o['follow-symlinks'] as boolean;
  if (o['startup-id'] !== undefined) out.startupId = o['startup-id'] as string;
  return out;
}

function grantTuple(g: Grant): GrantTuple {
  return [g.id, g.pathInCage, g.hostPath, g.writable, g.persistent];
}

function openReply(r: OpenResult): [GrantTuple[], string[]] {
  return [r.grants.map(grantTuple), r.programs.map(programPath)];
}

function cageProperties(c: CageInfo): Record<string, Variant> {
  return {
    State: new dbus.Variant('s', c.state),
    Description: new dbus.Variant('s', c.description),
    Backend: new dbus.Variant('s', c.backend),
    Display: new dbus.Variant('s', c.display),
    Network: new dbus.Variant('s', c.network),
    Programs: new dbus.Variant('u', c.programs),
    Error: new dbus.Variant('s', c.error),
    Sound: new dbus.Variant('s', c.sound.policy),
    SoundBridge: new dbus.Variant('s', c.sound.state),
    Clipboard: new dbus.Variant('s', c.clipboard.policy),
    ClipboardBridge: new dbus.Variant('s', c.clipboard.state),
    SessionBus: new dbus.Variant('s', c.sessionBus.policy),
    SessionBusState: new dbus.Variant('s', c.sessionBus.state),
    BridgeProblems: new dbus.Variant(
      'as',
      (
        [
          ['sound', c.sound],
          ['clipboard', c.clipboard],
          ['session bus', c.sessionBus],
        ] as const
      )
        .filter(([, b]) => b.problem)
        .map(([k, b]) => `${k}: ${b.problem}`),
    ),
  };
}

/**
 * What the object exported for interface I must have: each of the contract's methods, taking
 * and resolving to its types, and each signal returning its arguments (dbus-next sends what a
 * signal method returns). A member changed in the contract is a compile error here.
 */
type Implementation<I extends InterfaceName> = {
  [M in MethodName<I>]: (...args: MethodArgs<I, M>) => Promise<MethodResult<I, M>>;
} & {
  [S in SignalName<I>]: (...args: SignalArgs<I, S>) => SignalArgs<I, S>;
};

export class LauncherInterface extends Interface implements Implementation<typeof LAUNCHER_IFACE> {
  constructor(private readonly launcher: Launcher) {
    super(LAUNCHER_IFACE);
  }

  Launch(
    cage: string,
    desktopId: string,
    uris: string[],
    options: Record<string, Variant>,
  ): Promise<string> {
    return guarded(async () => {
      const { action, readOnly, ...opts } = readOptions(options, true);
      const programs = await this.launcher.launchApp({
        cage,
        desktopId,
        uris,
        options: { ...opts, writable: readOnly ? false : 'auto' },
        ...(action !== undefined ? { action } : {}),
      });
      return programPath(programs[0]!);
    });
  }

  LaunchCommand(cage: string, argv: string[], options: Record<string, Variant>): Promise<string> {
    return guarded(async () =>
      programPath(await this.launcher.launchCommand(cage, argv, readOptions(options, false))),
    );
  }
}

export class FilesInterface extends Interface implements Implementation<typeof FILES_IFACE> {
  constructor(private readonly files: FilesService) {
    super(FILES_IFACE);
  }

  GrantFiles(
    cage: string,
    fds: number[],
    options: Record<string, Variant>,
  ): Promise<[GrantTuple[], string[]]> {
    return guarded(async () => {
      let opts: FilesOptions;
      try {
        opts = readFilesOptions(options, false);
      } catch (e) {
        // Received descriptors are the service's to close, also when the call is refused.
        closeFds(fds);
        throw e;
      }
      return openReply(await this.files.grantFds(cage, fds, opts));
    });
  }

  GrantPaths(
    cage: string,
    paths: Buffer[],
    options: Record<string, Variant>,
  ): Promise<[GrantTuple[], string[]]> {
    return guarded(async () =>
      openReply(await this.files.grantPaths(cage, paths, readFilesOptions(options, true))),
    );
  }

  OpenURIs(
    cage: string,
    uris: string[],
    options: Record<string, Variant>,
  ): Promise<[GrantTuple[], string[]]> {
    return guarded(async () =>
      openReply(await this.files.openUris(cage, uris, readFilesOptions(options, false))),
    );
  }

  ListGrants(cage: string): Promise<GrantTuple[]> {
    return guarded(async () => (await this.files.list(cage)).map(grantTuple));
  }

  Revoke(cage: string, ids: string[]): Promise<void> {
    return guarded(() => this.files.revoke(cage, ids));
  }
}

export class ClipboardInterface
  extends Interface
  implements Implementation<typeof CLIPBOARD_IFACE>
{
  constructor(private readonly copies: ClipboardCopies) {
    super(CLIPBOARD_IFACE);
  }

  CopyToCage(cage: string): Promise<[string, number]> {
    return this.copy(cage, 'to-cage');
  }

  CopyToHost(cage: string): Promise<[string, number]> {
    return this.copy(cage, 'to-host');
  }

  private copy(cage: string, direction: 'to-cage' | 'to-host'): Promise<[string, number]> {
    return guarded(async () => {
      const r = await this.copies.copy(checkCageName(cage), direction);
      return [r.kind, r.bytes] as [string, number];
    });
  }
}

export class CagesInterface extends Interface implements Implementation<typeof CAGES_IFACE> {
  constructor(private readonly manager: CageManager) {
    super(CAGES_IFACE);
  }

  List(): Promise<Record<string, Record<string, Variant>>> {
    return guarded(async () =>
      Object.fromEntries((await this.manager.list()).map((c) => [c.name, cageProperties(c)])),
    );
  }

  Get(cage: string): Promise<Record<string, Variant>> {
    return guarded(async () => cageProperties(await this.manager.get(cage)));
  }

  Start(cage: string): Promise<void> {
    return guarded(() => this.manager.start(cage));
  }

  Stop(cage: string): Promise<void> {
    return guarded(() => this.manager.stop(cage));
  }

  ListPrograms(cage: string): Promise<[string, string[], number][]> {
    return guarded(async () => {
      await this.manager.get(cage);
      return this.manager
        .programs(cage)
        .map((p) => [programPath(p), p.argv, p.pid] as [string, string[], number]);
    });
  }

  StateChanged(cage: string, state: string, message: string): [string, string, string] {
    return [cage, state, message];
  }

  ProgramExited(cage: string, program: string, status: number): [string, string, number] {
    return [cage, program, status];
  }
}

/** What the cage portal needs of the engine: who is calling, and the link opener. */
export interface CagePortal {
  /** the cage whose portal proxy is process `pid`, the caller as the bus knows it */
  cageOfCaller(pid: number): string | undefined;
  openLink(cage: string, uri: string): Promise<unknown>;
  addNotification(cage: string, id: string, notification: Record<string, Variant>): Promise<void>;
  removeNotification(cage: string, id: string): Promise<void>;
}

/**
 * io.kagome.CagePortal1, for cages' programs through their proxies. dbus-next does not tell a
 * method who called it, and here the caller is the whole question: cagePortalHandler answers
 * these calls with the caller's pid. This object is exported for introspection, and a call
 * that reaches it (the handler gone) is refused.
 */
export class CagePortalInterface
  extends Interface
  implements Implementation<typeof CAGE_PORTAL_IFACE>
{
  constructor(private readonly portal: CagePortal) {
    super(CAGE_PORTAL_IFACE);
  }

  OpenURI(_uri: string, _options: Record<string, Variant>): Promise<void> {
    return unknownCaller();
  }

  AddNotification(_id: string, _notification: Record<string, Variant>): Promise<void> {
    return unknownCaller();
  }

  RemoveNotification(_id: string): Promise<void> {
    return unknownCaller();
  }

  /** The cage whose proxy is process `pid`; any other caller is refused. */
  private cageOf(pid: number | undefined): string {
    const cage = pid === undefined ? undefined : this.portal.cageOfCaller(pid);
    if (!cage)
      throw new KagomeError(
        'NotPermitted',
        'io.kagome.CagePortal1 is for cages, through their portal proxy; this caller is none',
      );
    return cage;
  }

  /** A CagePortal1 call `member` from the process `pid` (the signature checked). */
  async callFrom(pid: number | undefined, member: string, body: unknown[]): Promise<void> {
    const cage = this.cageOf(pid);
    switch (member) {
      case 'OpenURI': {
        const [uri, options] = body as [string, Record<string, Variant>];
        checkOptions(options, {});
        await this.portal.openLink(cage, uri);
        return;
      }
      case 'AddNotification': {
        const [id, notification] = body as [string, Record<string, Variant>];
        await this.portal.addNotification(cage, id, notification);
        return;
      }
      case 'RemoveNotification':
        await this.portal.removeNotification(cage, body[0] as string);
        return;
      default:
        throw new KagomeError('NotSupported', `io.kagome.CagePortal1 has no method ${member}`);
    }
  }
}

function unknownCaller(): Promise<void> {
  return guarded(() =>
    Promise.reject(
      new KagomeError('NotPermitted', 'the caller of io.kagome.CagePortal1 is not known'),
    ),
  );
}

LauncherInterface.configureMembers(memberTable(LAUNCHER_IFACE));
CagePortalInterface.configureMembers(memberTable(CAGE_PORTAL_IFACE));
FilesInterface.configureMembers(memberTable(FILES_IFACE));
ClipboardInterface.configureMembers(memberTable(CLIPBOARD_IFACE));
CagesInterface.configureMembers(memberTable(CAGES_IFACE));

// dbus-next only dispatches a call whose signature matches exactly; anything else would get a
// generic UnknownMethod. A caller who sent the wrong types deserves to be told which ones.

type Bus = ReturnType<typeof dbus.sessionBus>;
type Msg = InstanceType<typeof dbus.Message>;
// dbus-next's typings declare newError(msg: string, ...), but it takes the call it answers.
const newError = dbus.Message.newError as unknown as (call: Msg, name: string, text: string) => Msg;

function signatureGuard(bus: Bus) {
  return (msg: Msg): boolean => {
    if (msg.path !== OBJECT_PATH || !msg.interface || !msg.member) return false;
    const method = methodSpec(msg.interface, msg.member);
    if (method === undefined) return false;
    const want = signatureOf(method.in);
    const expected = `${want} (${method.in.map(([name]) => name).join(', ')})`;
    const got = msg.signature ?? '';
    if (got === want) return false;
    bus.send(
      newError(
        msg,
        `${DBUS_ERROR_PREFIX}InvalidArgument`,
        `${msg.interface}.${msg.member} takes ${want ? `arguments of type ${expected}` : 'no arguments'}, but was called with ${got ? `'${got}'` : 'none'}`,
      ),
    );
    return true;
  };
}

/** The pid of a caller, as the bus daemon saw it connect (SO_PEERCRED): not the caller's say. */
async function callerPid(bus: Bus, sender: string | undefined): Promise<number | undefined> {
  if (!sender) return undefined;
  const reply = await bus.call(
    new dbus.Message({
      destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus',
      interface: 'org.freedesktop.DBus',
      member: 'GetConnectionUnixProcessID',
      signature: 's',
      body: [sender],
    }),
  );
  const pid = reply?.body[0] as unknown;
  return typeof pid === 'number' ? pid : undefined;
}

/** Answers CagePortal1 calls with their caller known (the signature guard has run before). */
function cagePortalHandler(bus: Bus, iface: CagePortalInterface) {
  return (msg: Msg): boolean => {
    if (msg.path !== OBJECT_PATH || msg.interface !== CAGE_PORTAL_IFACE || !msg.member)
      return false;
    const method = methodSpec(CAGE_PORTAL_IFACE, msg.member);
    if (method === undefined || (msg.signature ?? '') !== signatureOf(method.in)) return false;
    const member = msg.member;
    // The reply is sent when the work is done or refused; a failure is the caller's answer.
    void (async () => {
      try {
        await iface.callFrom(await callerPid(bus, msg.sender), member, msg.body as unknown[]);
        bus.send(dbus.Message.newMethodReturn(msg, '', []));
      } catch (e) {
        const err = toDBusError(e);
        bus.send(newError(msg, err.type, err.text));
      }
    })();
    return true;
  };
}

export interface ExportedService {
  release(): Promise<void>;
}

/** Export the objects and take the well-known name; fails if another service holds it. */
export async function exportService(
  bus: Bus,
  manager: CageManager,
  launcher: Launcher,
  files: FilesService,
  clipboard: ClipboardCopies,
  portal: CagePortal,
): Promise<ExportedService> {
  const launcherIface = new LauncherInterface(launcher);
  const portalIface = new CagePortalInterface(portal);
  const portalHandler = cagePortalHandler(bus, portalIface);
  const cagesIface = new CagesInterface(manager);
  const filesIface = new FilesInterface(files);
  const clipboardIface = new ClipboardInterface(clipboard);
  const guard = signatureGuard(bus);
  bus.addMethodHandler(guard);
  bus.addMethodHandler(portalHandler);
  bus.export(OBJECT_PATH, launcherIface);
  bus.export(OBJECT_PATH, portalIface);
  bus.export(OBJECT_PATH, cagesIface);
  bus.export(OBJECT_PATH, filesIface);
  bus.export(OBJECT_PATH, clipboardIface);
  manager.on('state', (name, state, message) => cagesIface.StateChanged(name, state, message));
  manager.on('program', (p, event) => {
    if (event === 'exited') cagesIface.ProgramExited(p.cage, programPath(p), p.exitCode ?? -1);
  });
  const reply = await bus.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE);
  if (
    reply !== dbus.RequestNameReply.PRIMARY_OWNER &&
    reply !== dbus.RequestNameReply.ALREADY_OWNER
  ) {
    throw new KagomeError(
      'Failed',
      `another kagome service already owns ${BUS_NAME} on this session bus; stop it first (systemctl --user stop kagome)`,
    );
  }
  return {
    async release() {
      bus.removeMethodHandler(guard);
      bus.removeMethodHandler(portalHandler);
      await bus.releaseName(BUS_NAME).catch(() => undefined);
      bus.unexport(OBJECT_PATH, launcherIface);
      bus.unexport(OBJECT_PATH, cagesIface);
      bus.unexport(OBJECT_PATH, filesIface);
      bus.unexport(OBJECT_PATH, clipboardIface);
      bus.unexport(OBJECT_PATH, portalIface);
    },
  };
}
