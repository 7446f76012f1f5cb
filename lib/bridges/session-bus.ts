import type { CageConfig } from '../cage/config.js';
import path from 'node:path';
import type { SessionBusPolicy } from '../cage/config.js';
import { isAlive, processStartTime, signal, type ProcRef } from '../runtime/proc.js';
import { downRecord, problemOf, type BridgeContext, type BridgeRecord, type BridgeStatus, type CageBridge, type CageHandle, type SandboxHandle } from './bridge.js';

// Each cage's own D-Bus session bus (SessionBus=private, the default): a dbus-daemon started
// inside the cage when the cage starts, connected to nothing of the host. Programs that find
// their running instance over D-Bus (Firefox's remote, GApplication's single instance) and
// GSettings through dconf-service, which the daemon activates inside the cage from the cage's
// own /usr, then work as on a desktop, while one cage never sees another's names or the host's.
//
// It is kept the way flatpak keeps an app from the host's bus, but without a proxy: nothing of
// the host is on this bus at all. A later filtered forwarder (the host's portals) joins it at
// the same fixed address, which programs find in DBUS_SESSION_BUS_ADDRESS, and where GLib and
// sd-bus look by themselves: $XDG_RUNTIME_DIR/bus.
//
// The cage is hostile, and the bus is wholly the cage's: any program in it may own any name,
// replace the socket or kill the daemon. So the service never connects to the bus, never
// follows its socket, and writes no file for it: the daemon reads the cage's own
// session.conf (--session), and --address overrides the config's listen address. It is
// started through the backend's exec, as the bridges' other helpers, so it runs with the
// cage's seccomp filter, limits and namespaces and holds no descriptor of the service.

export interface SessionBusRecord extends BridgeRecord {
  policy: SessionBusPolicy;
  /** the process that carries dbus-daemon into the cage (kagome-enter, or the engine's exec client) */
  daemon?: ProcRef;
}

/**
 * Runs inside the cage. dbus-daemon prints its address on fd 3 once it listens (the pipe the
 * service reads, which the daemon then closes); its stdout goes to the log with its stderr,
 * because the services it activates inherit them and must not write into a pipe of the
 * service's. A missing dbus-daemon exits 127.
 */
const DAEMON = 'exec dbus-daemon --session --nofork --nopidfile --address="$1" --print-address=3 3>&1 1>&2 </dev/null';

/** How long dbus-daemon has to listen: it takes a few milliseconds. */
const READY_MS = 10000;

/** The bus socket inside the cage. */
export function sessionBusPath(runtimeDir: string): string {
  return path.posix.join(runtimeDir, 'bus');
}

/** A D-Bus address for that socket, escaped as the specification says. */
export function sessionBusAddress(runtimeDir: string): string {
  const escaped = [...Buffer.from(sessionBusPath(runtimeDir), 'utf8')]
    .map((b) => (/[-0-9A-Za-z_/.*]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).padStart(2, '0')}`))
    .join('');
  return `unix:path=${escaped}`;
}

function refKey(ref: ProcRef): string {
  return `${ref.pid}:${ref.start}`;
}

export class SessionBusBridge implements CageBridge {
  readonly kind = 'session-bus';

  policyOf(config: CageConfig): string {
    return config.sessionBus;
  }
  /** daemons being stopped by the service: their end is not news */
  private readonly stopping = new Set<string>();

  async prepare(ctx: BridgeContext): Promise<BridgeRecord> {
    return { policy: ctx.config.sessionBus };
  }

  contribute(ctx: BridgeContext, record: BridgeRecord): void {
    if ((record as SessionBusRecord).policy !== 'private') return;
    // Every program of the cage gets it, also those launched before the daemon was up after a
    // restart of it: the address is fixed.
    ctx.spec.env.DBUS_SESSION_BUS_ADDRESS = sessionBusAddress(ctx.spec.runtimeDir);
  }

  /** The daemon needs no display: it starts while the display does. */
  async startWithSandbox(ctx: BridgeContext, cage: SandboxHandle, record: BridgeRecord): Promise<BridgeRecord> {
    const r = record as SessionBusRecord;
    if (r.policy !== 'private') return record;
    return this.launch(ctx, cage, r);
  }

  async start(_ctx: BridgeContext, _cage: CageHandle, record: BridgeRecord): Promise<BridgeRecord> {
    return record;
  }

  private async launch(ctx: BridgeContext, cage: SandboxHandle, r: SessionBusRecord): Promise<BridgeRecord> {
    const name = ctx.config.name;
    const base = { policy: r.policy };
    const h = await cage.backend.exec(cage.sandbox, {
      argv: ['/bin/sh', '-c', DAEMON, 'kagome-session-bus', sessionBusAddress(ctx.spec.runtimeDir)],
      env: cage.env,
      cwd: '/',
      logFd: cage.logFd,
      pipes: true,
    });
    h.stdin?.end();
    const start = processStartTime(h.pid);
    const daemon = start === undefined ? undefined : { pid: h.pid, start };
    let ended: number | undefined;
    void h.exited.then((code) => {
      ended = code;
      if (daemon && this.stopping.delete(refKey(daemon))) return;
      if (daemon) ctx.log.warn(`cage ${name}: its session bus ended (exit ${code}); the cage has none until it starts again`);
    });
    const printed = await new Promise<string | undefined>((resolve) => {
      let text = '';
      const timer = setTimeout(() => resolve(undefined), READY_MS);
      const done = (v: string | undefined) => {
        clearTimeout(timer);
        resolve(v);
      };
      h.stdout!.on('data', (c: Buffer) => {
        text += c.toString();
        if (text.includes('\n')) done(text.slice(0, text.indexOf('\n')));
      });
      void h.exited.then(() => done(undefined));
    });
    // The address was read; nothing more comes, and the daemon must not hold the service's pipe
    // as a reason to wait.
    h.stdout!.destroy();
    if (printed?.startsWith('unix:') && daemon) return { ...base, daemon };
    if (ended === undefined && daemon) {
      this.stopping.add(refKey(daemon));
      // The carrier passes it on to the daemon; a SIGKILL would end the carrier alone.
      signal(daemon, 'SIGTERM');
    }
    const problem =
      ended === 127
        ? "dbus-daemon is not installed in the cage: install the Debian package 'dbus-daemon' (bubblewrap cages share the host's /usr; container cages need it in their image)"
        : ended !== undefined
          ? `the cage's dbus-daemon ended as it started (exit ${ended}); its messages are in the cage log`
          : `the cage's dbus-daemon did not listen within ${READY_MS / 1000} s; its messages are in the cage log`;
    ctx.log.warn(`cage ${name}: no session bus: ${problem}`);
    return { ...base, ...downRecord(problem) };
  }

  async readopt(ctx: BridgeContext, cage: CageHandle, record: BridgeRecord): Promise<BridgeRecord> {
    const r = record as SessionBusRecord;
    // A cage started by a kagome without session buses keeps running without one.
    if (r.policy !== 'private') return record;
    // The daemon lived on through the restart: nothing in the service belongs to it.
    if (r.daemon && isAlive(r.daemon)) return record;
    ctx.log.info(`cage ${ctx.config.name}: its session bus had ended; starting it again at the same address`);
    return this.launch(ctx, cage, r);
  }

  async stop(record: BridgeRecord): Promise<void> {
    const r = record as SessionBusRecord;
    if (!r.daemon) return;
    // The carrier passes SIGTERM on to dbus-daemon; the cage's end takes whatever is left.
    this.stopping.add(refKey(r.daemon));
    if (!signal(r.daemon, 'SIGTERM')) this.stopping.delete(refKey(r.daemon));
  }

  status(record: BridgeRecord): BridgeStatus {
    const r = record as SessionBusRecord;
    const policy = r.policy ?? 'none';
    if (policy === 'none') return { policy, state: 'off', problem: '' };
    const problem = problemOf(record);
    if (problem) return { policy, state: 'down', problem };
    if (r.daemon && isAlive(r.daemon)) return { policy, state: 'up', problem: '' };
    return { policy, state: 'down', problem: "the cage's dbus-daemon has ended; it starts again with the cage" };
  }
}
