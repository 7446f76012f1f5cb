import type { CageConfig } from '../cage/config.js';
import fs from 'node:fs';
import path from 'node:path';
import { SESSION_BUS_POLICIES, type SessionBusPolicy } from '../cage/config.js';
import { checkHeldRecord, F } from '../runtime/record-check.js';
import { asKagomeError } from '../errors.js';
import { sessionBusAddress as hostBusAddress, unixPathAddress } from '../bus.js';
import { cageAppId } from '../grants/document-portal.js';
import { docDirInCage } from '../grants/registry.js';
import { forwardLinks } from '../link-forwarding.js';
import type { Contribution, SetupOp } from '../sandbox.js';
import { isAlive, processStartTime, signal, waitUntil, type ProcRef } from '../runtime/proc.js';
import {
  downRecord,
  isDown,
  problemOf,
  withoutDown,
  type BridgeContext,
  type BridgeStatus,
  type CageBridge,
  type CageHandle,
  type HeldRecord,
  type SandboxHandle,
} from './bridge.js';
import {
  PORTAL_DIR_IN_CAGE,
  PORTAL_RELAY,
  portalAddressInCage,
  startPortalProxy,
} from './portal-proxy.js';
import { BUS_CONFIG_DIR_IN_CAGE, BUS_CONFIG_FILE, writeBusConfig } from './session-bus-config.js';

// Each cage's own D-Bus session bus (SessionBus=private, the default): a dbus-daemon started
// inside the cage when the cage starts, connected to nothing of the host. Programs that find
// their running instance over D-Bus (Firefox's remote, GApplication's single instance) and
// GSettings through dconf-service, which the daemon activates inside the cage from the cage's
// own /usr, then work as on a desktop, while one cage never sees another's names or the host's.
//
// It is kept the way flatpak keeps an app from the host's bus, but without a proxy: nothing of
// the host is on this bus at all, except with SessionBus=portal: then a relay in the cage puts
// the host's file chooser portal on it, through a filtering proxy (portal-proxy.ts). Programs
// find the bus in DBUS_SESSION_BUS_ADDRESS, and GLib and sd-bus look by themselves at the same
// fixed address: $XDG_RUNTIME_DIR/bus.
//
// The cage is hostile, and the bus is wholly the cage's: any program in it may own any name,
// replace the socket or kill the daemon. So the service never connects to the bus, never
// follows its socket, and writes no file for it: the daemon reads the cage's own
// session.conf (--session), and --address overrides the config's listen address. It is
// started through the backend's exec, as the bridges' other helpers, so it runs with the
// cage's seccomp filter, limits and namespaces and holds no descriptor of the service.

export type SessionBusRecord = {
  policy: SessionBusPolicy;
  /** the process that carries dbus-daemon into the cage (kagome-enter, or the engine's exec client) */
  daemon?: ProcRef;
  /** SessionBus=portal: the host-side xdg-dbus-proxy (portal-proxy.ts) */
  proxy?: ProcRef;
  /** SessionBus=portal: the process that carries the portal relay into the cage */
  relay?: ProcRef;
  /** SessionBus=portal: the proxy's socket folder on the host, bind-mounted into the cage */
  portalDir?: string;
  /**
   * The document portal's folder of the cage's app id, where the cage must see it at the
   * host's path too: the portal answers a file chooser with paths under its own mount point,
   * which is where the cage has it ($XDG_RUNTIME_DIR/doc) unless the host's XDG_RUNTIME_DIR is
   * elsewhere than /run/user/UID.
   */
  docBind?: { source: string; dest: string };
  /** why the portal part is down while the bus itself runs */
  portalDown?: string;
  /**
   * The daemon's configuration folder on the host, bind-mounted read-only into the cage
   * (session-bus-config.ts); a cage started without one has the cage's own session.conf.
   */
  busConfig?: string;
};

/** Down (no bus) or not, the record keeps what it had: its proxy and folder are still removed at stop. */
type Held = HeldRecord<SessionBusRecord>;

/**
 * Runs inside the cage. dbus-daemon prints its address on fd 3 once it listens (the pipe the
 * service reads, which the daemon then closes); its stdout goes to the log with its stderr,
 * because the services it activates inherit them and must not write into a pipe of the
 * service's. A missing dbus-daemon exits 127.
 */
const DAEMON =
  'c=--session; [ -z "$2" ] || c="--config-file=$2"; exec dbus-daemon "$c" --nofork --nopidfile --address="$1" --print-address=3 3>&1 1>&2 </dev/null';

/** Runs inside the cage: the portal relay (portal-proxy.ts), "ready" on fd 3. */
const RELAY = 'exec python3 -I -c "$1" "$2" "$3" 3>&1 1>&2 </dev/null';

/** How long dbus-daemon has to listen: it takes a few milliseconds. */
const READY_MS = 10000;

/** The bus socket inside the cage. */
export function sessionBusPath(runtimeDir: string): string {
  return path.posix.join(runtimeDir, 'bus');
}

/** A D-Bus address for that socket, escaped as the specification says. */
export function sessionBusAddress(runtimeDir: string): string {
  const escaped = [...Buffer.from(sessionBusPath(runtimeDir), 'utf8')]
    .map((b) =>
      /[-0-9A-Za-z_/.*]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, '0')}`,
    )
    .join('');
  return `unix:path=${escaped}`;
}

function refKey(ref: ProcRef): string {
  return `${ref.pid}:${ref.start}`;
}

export class SessionBusBridge implements CageBridge<SessionBusRecord> {
  readonly kind = 'session-bus';

  /** the service's environment: the host's session bus, and XDG_RUNTIME_DIR for the document portal's mount */
  constructor(private readonly env: Record<string, string | undefined> = {}) {}

  policyOf(config: CageConfig): string {
    return config.sessionBus;
  }
  /** daemons being stopped by the service: their end is not news */
  private readonly stopping = new Set<string>();
  /** each running cage's portal proxy, by cage: who calls kagome through one is that cage */
  private readonly proxies = new Map<string, ProcRef>();

  /**
   * The cage whose portal proxy is the process `pid` (the pid the bus reports for a caller),
   * or undefined: a caller of kagome's cage portal is known by the proxy it came through, which
   * kagome started and the cage cannot stand in for.
   */
  cageOfProxy(pid: number): string | undefined {
    for (const [cage, ref] of this.proxies) if (ref.pid === pid && isAlive(ref)) return cage;
    return undefined;
  }

  async prepare(ctx: BridgeContext): Promise<Held> {
    const policy = ctx.config.sessionBus;
    if (policy !== 'private' && policy !== 'portal') return { policy };
    // A cage on another machine (Remote=) cannot see a folder of this one: its bus reads the
    // image's own session.conf, portals and all, as before the configuration was kagome's.
    const busConfig = ctx.config.remote
      ? undefined
      : this.writeConfig(ctx, path.join(ctx.rt.dir, 'session-bus'));
    if (policy !== 'portal') return { policy, ...(busConfig ? { busConfig } : {}) };
    const portalDir = path.join(ctx.rt.dir, 'portal');
    const record: SessionBusRecord = { policy, portalDir, ...(busConfig ? { busConfig } : {}) };
    const runtime = this.env.XDG_RUNTIME_DIR;
    if (runtime) {
      const hostDoc = path.join(runtime, 'doc');
      const appDir = path.join(hostDoc, 'by-app', cageAppId(ctx.config.name));
      // The portal's FUSE file system makes an app's folder when it is first looked up; no
      // folder means no document portal, and the cage's grants are copies.
      if (hostDoc !== docDirInCage(ctx.spec) && fs.existsSync(appDir))
        record.docBind = { source: appDir, dest: hostDoc };
    }
    return this.startProxy(ctx, record);
  }

  /**
   * The daemon's configuration, without the portals and the desktop session's services; on a
   * failure (the host's runtime folder full, say) the cage's own session.conf, which has them.
   */
  private writeConfig(ctx: BridgeContext, dir: string): string | undefined {
    try {
      writeBusConfig(dir);
      return dir;
    } catch (e) {
      ctx.log.warn(
        `cage ${ctx.config.name}: its session bus has the cage's own configuration, portals included: ${asKagomeError(e).message}`,
      );
      return undefined;
    }
  }

  /** The host-side proxy; a failure leaves the cage its private bus and says why. */
  private async startProxy(ctx: BridgeContext, r: Held): Promise<Held> {
    const { portalDown: _, proxy: __, ...rest } = r;
    try {
      const proxy = await startPortalProxy({
        hostBusAddress: unixPathAddress(hostBusAddress(this.env)),
        socketDir: r.portalDir!,
        appId: cageAppId(ctx.config.name),
        logFd: ctx.logFd,
        notifications: ctx.config.notifications === 'portal',
      });
      this.proxies.set(ctx.config.name, proxy);
      return { ...rest, proxy };
    } catch (e) {
      const problem = `the host's portals are not reachable: ${asKagomeError(e).message}`;
      ctx.log.warn(`cage ${ctx.config.name}: ${problem}; it has its private bus without them`);
      return { ...rest, portalDown: problem };
    }
  }

  contribute(ctx: BridgeContext, r: Held): Contribution {
    if (r.policy !== 'private' && r.policy !== 'portal') return {};
    // What the bridge adds (sandbox.ts `addContributions` adds it to the cage's spec).
    const ops: SetupOp[] = [];
    const env: Record<string, string> = {};
    // Every program of the cage gets it, also those launched before the daemon was up after a
    // restart of it: the address is fixed.
    env.DBUS_SESSION_BUS_ADDRESS = sessionBusAddress(ctx.spec.runtimeDir);
    if (r.busConfig) ops.push({ op: 'ro-bind', source: r.busConfig, dest: BUS_CONFIG_DIR_IN_CAGE });
    if (r.policy !== 'portal' || !r.portalDir) return { ops, env };
    ops.push({ op: 'bind', source: r.portalDir, dest: PORTAL_DIR_IN_CAGE });
    if (r.docBind) ops.push({ op: 'bind', source: r.docBind.source, dest: r.docBind.dest });
    // GTK 3 and GIO use the portals only inside flatpak or when told; the cage file may say otherwise.
    if (!('GTK_USE_PORTAL' in ctx.spec.env)) env.GTK_USE_PORTAL = '1';
    // Qt 5 too, through its portal theme (Debian: qt5-xdgdesktopportal-platformtheme, from the
    // cage's /usr): it draws nothing itself, takes fonts, icons and colours from the theme Qt
    // would have chosen anyway, and sends the file dialog to the portal. A Qt without the
    // plugin ignores the name and shows its own dialog, in the cage.
    if (!('QT_QPA_PLATFORMTHEME' in ctx.spec.env)) env.QT_QPA_PLATFORMTHEME = 'xdgdesktopportal';
    // xdg-open, xdg-email and gio open in the cage use the OpenURI portal too. forwardLinks
    // extends a spec: given a copy of the cage's, what it adds there is this bridge's.
    const links = { ...ctx.spec, ops: [] as SetupOp[], env: { ...ctx.spec.env } };
    const noForwarding = forwardLinks(links);
    if (noForwarding) ctx.log.warn(`cage ${ctx.config.name}: ${noForwarding}`);
    ops.push(...links.ops);
    for (const [k, v] of Object.entries(links.env)) if (ctx.spec.env[k] !== v) env[k] = v;
    return { ops, env };
  }

  /** The daemon needs no display: it starts while the display does. */
  async startWithSandbox(ctx: BridgeContext, cage: SandboxHandle, r: Held): Promise<Held> {
    if (r.policy !== 'private' && r.policy !== 'portal') return r;
    return this.launchRelay(ctx, cage, await this.launch(ctx, cage, r, r.policy));
  }

  async start(_ctx: BridgeContext, _cage: CageHandle, record: Held): Promise<Held> {
    return record;
  }

  /**
   * Runs `script` in the cage with `args`, and resolves with the process once it has written a
   * line on fd 3 (then its first line), or undefined with its exit status when it did not.
   */
  private async carry(
    cage: SandboxHandle,
    script: string,
    what: string,
    args: string[],
  ): Promise<{ ref?: ProcRef; line?: string; ended?: number; exited: Promise<number> }> {
    const h = await cage.backend.exec(cage.sandbox, {
      argv: ['/bin/sh', '-c', script, what, ...args],
      env: cage.env,
      cwd: '/',
      logFd: cage.logFd,
      pipes: true,
    });
    h.stdin?.end();
    const start = processStartTime(h.pid);
    const ref = start === undefined ? undefined : { pid: h.pid, start };
    let ended: number | undefined;
    void h.exited.then((code) => {
      ended = code;
    });
    const line = await new Promise<string | undefined>((resolve) => {
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
    // The line was read; nothing more comes, and the process must not hold the service's pipe
    // as a reason to wait.
    h.stdout!.destroy();
    if (line === undefined && ended === undefined && ref) {
      this.stopping.add(refKey(ref));
      // The carrier passes it on; a SIGKILL would end the carrier alone.
      signal(ref, 'SIGTERM');
    }
    return {
      ...(ref ? { ref } : {}),
      ...(line !== undefined ? { line } : {}),
      ...(ended !== undefined ? { ended } : {}),
      exited: h.exited,
    };
  }

  private async launch(
    ctx: BridgeContext,
    cage: SandboxHandle,
    r: Held,
    policy: 'private' | 'portal',
  ): Promise<Held> {
    const name = ctx.config.name;
    // Up again after being down: the record it had, with its policy, becomes its own again.
    const { daemon: _, ...base } = { ...withoutDown(r), policy };
    // Written again: a daemon started again after a restart of the service reads the host's
    // services as they are now.
    if (r.busConfig) this.writeConfig(ctx, r.busConfig);
    const got = await this.carry(cage, DAEMON, 'kagome-session-bus', [
      sessionBusAddress(ctx.spec.runtimeDir),
      r.busConfig ? path.posix.join(BUS_CONFIG_DIR_IN_CAGE, BUS_CONFIG_FILE) : '',
    ]);
    const daemon = got.ref;
    void got.exited.then((code) => {
      if (daemon && this.stopping.delete(refKey(daemon))) return;
      if (daemon)
        ctx.log.warn(
          `cage ${name}: its session bus ended (exit ${code}); the cage has none until it starts again`,
        );
    });
    if (got.line?.startsWith('unix:') && daemon) return { ...base, daemon };
    const problem =
      got.ended === 127
        ? "dbus-daemon is not installed in the cage: install the Debian package 'dbus-daemon' (bubblewrap cages share the host's /usr; container cages need it in their image)"
        : got.ended !== undefined
          ? `the cage's dbus-daemon ended as it started (exit ${got.ended}); its messages are in the cage log`
          : `the cage's dbus-daemon did not listen within ${READY_MS / 1000} s; its messages are in the cage log`;
    ctx.log.warn(`cage ${name}: no session bus: ${problem}`);
    return { ...base, ...downRecord(problem) };
  }

  /** SessionBus=portal, once the cage's bus and the proxy run: the relay between them, in the cage. */
  private async launchRelay(ctx: BridgeContext, cage: SandboxHandle, r: Held): Promise<Held> {
    if (isDown(r) || r.policy !== 'portal' || !r.proxy || !r.daemon) return r;
    const { relay: _, portalDown: __, ...base } = r;
    const got = await this.carry(cage, RELAY, 'kagome-portal-relay', [
      PORTAL_RELAY,
      sessionBusAddress(ctx.spec.runtimeDir),
      portalAddressInCage(),
    ]);
    const relay = got.ref;
    void got.exited.then((code) => {
      if (relay && this.stopping.delete(refKey(relay))) return;
      if (relay)
        ctx.log.warn(
          `cage ${ctx.config.name}: its portal relay ended (exit ${code}); the portals are back when the cage starts again`,
        );
    });
    if (got.line === 'ready' && relay) return { ...base, relay };
    const problem =
      got.ended === 127
        ? "python3 is not installed in the cage: install the Debian packages 'python3' and 'python3-gi'"
        : `the cage's portal relay did not start (${got.ended !== undefined ? `exit ${got.ended}` : `nothing within ${READY_MS / 1000} s`}); its messages are in the cage log`;
    ctx.log.warn(`cage ${ctx.config.name}: ${problem}`);
    return { ...base, portalDown: problem };
  }

  async readopt(ctx: BridgeContext, cage: CageHandle, record: Held): Promise<Held> {
    let r = record;
    // A cage started by a kagome without session buses keeps running without one.
    if (r.policy !== 'private' && r.policy !== 'portal') return record;
    // The daemon lived on through the restart: nothing in the service belongs to it.
    if (!r.daemon || !isAlive(r.daemon)) {
      ctx.log.info(
        `cage ${ctx.config.name}: its session bus had ended; starting it again at the same address`,
      );
      r = await this.launch(ctx, cage, r, r.policy);
    }
    if (r.policy !== 'portal' || !r.portalDir) return r;
    if (r.proxy && isAlive(r.proxy)) this.proxies.set(ctx.config.name, r.proxy);
    if (!r.proxy || !isAlive(r.proxy)) {
      ctx.log.info(`cage ${ctx.config.name}: its portal proxy had ended; starting it again`);
      // The relay's connection ended with the old proxy, and the relay with it.
      if (r.relay) signal(r.relay, 'SIGTERM');
      r = await this.startProxy(ctx, r);
    }
    if (r.relay && isAlive(r.relay)) return r;
    return this.launchRelay(ctx, cage, r);
  }

  async stop(r: Held): Promise<void> {
    // The carriers pass SIGTERM on to dbus-daemon and the relay; the cage's end takes whatever is left.
    for (const ref of [r.daemon, r.relay]) {
      if (!ref) continue;
      this.stopping.add(refKey(ref));
      if (!signal(ref, 'SIGTERM')) this.stopping.delete(refKey(ref));
    }
    // The proxy is the host's: it and its socket go now.
    if (r.proxy) {
      for (const [cage, ref] of this.proxies)
        if (refKey(ref) === refKey(r.proxy)) this.proxies.delete(cage);
      signal(r.proxy, 'SIGTERM');
      await waitUntil(() => !isAlive(r.proxy), 2000, 20);
      signal(r.proxy, 'SIGKILL');
    }
    if (r.portalDir) fs.rmSync(r.portalDir, { recursive: true, force: true });
    if (r.busConfig) fs.rmSync(r.busConfig, { recursive: true, force: true });
  }

  checkRecord(v: unknown): Held | string {
    return checkHeldRecord<SessionBusRecord>("the session-bus bridge's", v, {
      policy: F.oneOf(...SESSION_BUS_POLICIES),
      daemon: F.optional(F.process),
      proxy: F.optional(F.process),
      relay: F.optional(F.process),
      portalDir: F.optional(F.string),
      docBind: F.optional(F.shape('a bind (source, dest)', { source: F.string, dest: F.string })),
      portalDown: F.optional(F.string),
      busConfig: F.optional(F.string),
    });
  }

  status(r: Held): BridgeStatus {
    const policy = r.policy ?? 'none';
    if (policy === 'none') return { policy, state: 'off', problem: '' };
    const problem = problemOf(r);
    if (problem) return { policy, state: 'down', problem };
    if (!r.daemon || !isAlive(r.daemon))
      return {
        policy,
        state: 'down',
        problem: "the cage's dbus-daemon has ended; it starts again with the cage",
      };
    if (policy === 'portal') {
      if (r.portalDown) return { policy, state: 'down', problem: r.portalDown };
      if (!r.proxy || !isAlive(r.proxy))
        return {
          policy,
          state: 'down',
          problem:
            "the cage's portal proxy has ended; it starts again with the cage or the service",
        };
      if (!r.relay || !isAlive(r.relay))
        return {
          policy,
          state: 'down',
          problem:
            "the cage's portal relay has ended; it starts again with the cage or the service",
        };
    }
    return { policy, state: 'up', problem: '' };
  }
}
