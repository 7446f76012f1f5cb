import os from 'node:os';
import { promises as fsp } from 'node:fs';
import dbus from 'dbus-next';
import { pathsFromEnv, requireRuntimeDir, type Env } from './runtime/paths.js';
import { CageStore } from './cage/store.js';
import { CageManager } from './cage/manager.js';
import { BubblewrapBackend } from './backends/bubblewrap.js';
import { OciBackend } from './backends/oci.js';
import { LxdBackend } from './backends/lxd.js';
import { XpraDisplay } from './display/xpra.js';
import { XephyrDisplay } from './display/xephyr.js';
import { SCALE_VARIABLES } from './display/host-screen.js';
import { Launcher } from './launcher.js';
import { SoundBridge } from './bridges/sound.js';
import { SessionBusBridge } from './bridges/session-bus.js';
import { ClipboardBridge, ClipboardCopies } from './bridges/clipboard.js';
import { BusNotifier, type NotifyCall } from './notify.js';
import type { Logger } from './log.js';
import { appShadows, AppSync } from './apps.js';
import { connectSessionBus, connectionLost } from './bus.js';
import { exportService, type ExportedService } from '../dbus/service.js';
import { FileGrants } from './grants/registry.js';
import type { GrantStore } from './grants/grant.js';
import { DocumentPortalStore } from './grants/document-portal.js';
import { CopyStore } from './grants/copy.js';
import { FilesService } from './files.js';
import { CageDefaultApps } from './default-apps.js';
import { cageRuntimeDir, type HostFacts } from './sandbox.js';
import type { Paths } from './runtime/paths.js';
import type { Bus } from './bus.js';
import path from 'node:path';
import { KagomeError } from './errors.js';
import { HostSession } from './display/host-session.js';
import { SessionLife } from './cage/session-life.js';

// `kagome daemon`: one session-bus connection, the engine, and the D-Bus objects over it.

export function hostFacts(env: Env): HostFacts {
  const info = os.userInfo();
  return { uid: info.uid, gid: info.gid, user: info.username, home: env.HOME ?? info.homedir, lang: env.LANG };
}

/** What host-side display clients (xpra attach, Xephyr) need from the service's environment. */
export function hostClientEnv(env: Env): Record<string, string> {
  // The scale variables are for the cages' programs, which draw as the host's do (host-screen.ts).
  const keep = ['DISPLAY', 'XAUTHORITY', 'HOME', 'USER', 'LOGNAME', 'PATH', 'LANG', 'LC_ALL', 'XDG_RUNTIME_DIR', 'WAYLAND_DISPLAY', 'XDG_SESSION_TYPE', ...SCALE_VARIABLES];
  const out: Record<string, string> = {};
  for (const k of keep) {
    const v = env[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

export interface RunningService {
  manager: CageManager;
  bus: ReturnType<typeof dbus.sessionBus>;
  stop(opts?: { stopCages?: boolean }): Promise<void>;
}

export function notifyCall(bus: ReturnType<typeof dbus.sessionBus>): NotifyCall {
  return async (a) => {
    const reply = await bus.call(
      new dbus.Message({
        destination: 'org.freedesktop.Notifications',
        path: '/org/freedesktop/Notifications',
        interface: 'org.freedesktop.Notifications',
        member: 'Notify',
        signature: 'susssasa{sv}i',
        body: [
          a.appName,
          a.replacesId,
          a.icon,
          a.summary,
          a.body,
          a.actions,
          // "value" (0-100) is the progress hint notification servers draw as a bar.
          { urgency: new dbus.Variant('y', a.urgency), ...(a.progress !== undefined ? { value: new dbus.Variant('i', a.progress) } : {}) },
          a.timeoutMs,
        ],
      }),
    );
    return (reply?.body[0] as number) ?? 0;
  };
}

function copyStore(paths: Paths, log: Logger): CopyStore {
  return new CopyStore(path.join(paths.runtimeDir, 'files'), log);
}

/**
 * The document portal where it can serve, else copies; KAGOME_FILE_GRANTS=copy forces copies
 * (for machines whose FUSE mounts a backend cannot reach). Which one is used is logged once.
 */
async function chooseGrantStore(bus: Bus, env: Env, paths: Paths, log: Logger): Promise<GrantStore> {
  const copies = () => copyStore(paths, log);
  if (env.KAGOME_FILE_GRANTS === 'copy') {
    log.info('file grants: copied into cages and written back (KAGOME_FILE_GRANTS=copy)');
    return copies();
  }
  try {
    const portal = await DocumentPortalStore.connect(bus);
    log.info(`file grants: through the document portal at ${portal.mountPoint}`);
    return portal;
  } catch (e) {
    log.warn(`file grants: ${(e as Error).message}; granted files are copied into cages instead and written back when changed`);
    return copies();
  }
}

/**
 * A cage started by root is root on the host wherever its uid map says 0 0 1: a program in it
 * wrote /proc/sys/kernel/core_pattern (code execution as root) in the first release. kagome is
 * a desktop service of the person logged in, so it refuses root rather than invent an id.
 */
export function refuseRoot(uid: number): void {
  if (uid !== 0) return;
  throw new KagomeError(
    'NotPermitted',
    "the kagome service does not run as root: a cage started by root would hold root's powers over this machine (it could write /proc/sys). Run it as your own user, from your desktop session (D-Bus activation or 'systemctl --user start kagome'), not with sudo",
  );
}

export async function startService(env: Env, log: Logger): Promise<RunningService> {
  refuseRoot(process.getuid?.() ?? 0);
  const paths = pathsFromEnv(env);
  requireRuntimeDir(paths);
  const host = hostFacts(env);
  const store = new CageStore(paths.cagesDir, { hostHome: host.home, homesDir: paths.homesDir });
  const bus = await connectSessionBus(env, (e) => log.warn(`dropped a D-Bus message that could not be read: ${e instanceof Error ? e.message : String(e)}`));
  const grants = new FileGrants(
    chooseGrantStore(bus, env, paths, log),
    () => copyStore(paths, log),
    { transient: path.join(paths.runtimeDir, 'grants'), persistent: paths.persistentGrantsDir },
    cageRuntimeDir(host),
    log,
  );
  const clipboard = new ClipboardBridge(hostClientEnv(env), log);
  const manager = new CageManager({
    paths,
    store,
    host,
    hostEnv: hostClientEnv(env),
    // Container engines' clients get the service's environment: DOCKER_HOST, CONTAINERS_CONF,
    // LXD_DIR and XDG_RUNTIME_DIR decide which engine and storage they talk to.
    backends: {
      bubblewrap: new BubblewrapBackend(host, env, log),
      podman: new OciBackend('podman', host, env),
      docker: new OciBackend('docker', host, env),
      lxd: new LxdBackend(host, env, log),
    },
    displays: { xpra: new XpraDisplay(), xephyr: new XephyrDisplay() },
    log,
    grants,
    bridges: [new SoundBridge(env), clipboard, new SessionBusBridge()],
  });
  // A lost bus connection leaves nothing to serve; the cages keep running and are re-adopted.
  // dbus-next also reports here a message it could not turn into JavaScript: that is one
  // caller's bad message, and the service goes on.
  bus.on('error', (e: Error) => {
    if (!connectionLost(bus)) {
      log.warn(`dropped a message that could not be read: ${e.message}`);
      return;
    }
    log.error(`session bus connection lost: ${e.message}`);
    manager.release();
    process.exit(1);
  });
  const notifier = new BusNotifier(notifyCall(bus), log);
  const shadows = appShadows(env, store, (m) => log.warn(m));
  // Launches read the original entry, never the shadow that sent them.
  const lookup = { lookup: (id: string) => shadows.resolveOriginal(id) };
  const launcher = new Launcher(manager, lookup, notifier, log, { grants, defaults: new CageDefaultApps(manager, log) });
  // The watched folders must exist: chokidar does not notice a missing one appear. Made before
  // the name is taken, which callers take to mean the service is ready.
  await Promise.all([shadows.userApps, store.dir].map((d) => fsp.mkdir(d, { recursive: true, mode: 0o700 })));
  // Which desktop session is shown now decides how cages shown in an earlier one are adopted.
  const life = new SessionLife(manager, new HostSession(hostClientEnv(env), log), log);
  await life.begin();
  const adopted = await manager.adoptAll();
  if (adopted.length) log.info(`re-adopted running cages: ${adopted.join(', ')}`);
  await life.settle();
  // Grants of cages that stopped while no service was watching (a crash) end now.
  await grants.recover(new Set(adopted)).catch((e: Error) => log.warn(`ending grants of stopped cages: ${e.message}`));
  let exported: ExportedService;
  try {
    exported = await exportService(bus, manager, launcher, new FilesService(launcher, grants, store), new ClipboardCopies({ handle: (n) => manager.handle(n), exists: (n) => store.exists(n) }, clipboard, notifier, log));
  } catch (e) {
    life.close();
    manager.release();
    bus.disconnect();
    throw e;
  }
  log.info(`serving io.kagome.Kagome (cages in ${paths.cagesDir})`);
  const sync = new AppSync({ shadows, store, manager, notifier, log });
  await sync.start().catch((e: Error) => log.error(`keeping menu entries in sync is off: ${e.message}`));
  return {
    manager,
    bus,
    async stop(opts = {}) {
      await sync.stop();
      await exported.release();
      if (opts.stopCages) {
        life.close();
        await manager.stopAll();
      } else {
        await life.stopping();
        manager.release();
      }
      await grants.close();
      bus.disconnect();
    },
  };
}
