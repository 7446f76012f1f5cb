import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type dbus from 'dbus-next';
import { pathsFromEnv, requireRuntimeDir, type Env } from '../lib/runtime/paths.js';
import { CageStore } from '../lib/cage/store.js';
import { CageManager } from '../lib/cage/manager.js';
import { BubblewrapBackend } from '../lib/backends/bubblewrap.js';
import { OciBackend } from '../lib/backends/oci.js';
import { LxdBackend } from '../lib/backends/lxd.js';
import { XpraDisplay } from '../lib/display/xpra.js';
import { XephyrDisplay } from '../lib/display/xephyr.js';
import { Launcher } from '../lib/launcher.js';
import { SoundBridge } from '../lib/bridges/sound.js';
import { SessionBusBridge } from '../lib/bridges/session-bus.js';
import { ClipboardBridge, ClipboardCopies } from '../lib/bridges/clipboard.js';
import { BusNotifier } from '../lib/notify.js';
import { CageNotifications, busNotificationServer } from '../lib/cage-notifications.js';
import { writeCageEntry } from '../lib/desktop/cage-entry.js';
import { baseDirs } from '../xdg/basedirs.js';
import type { Logger } from '../lib/log.js';
import { appShadows, AppSync } from '../lib/apps.js';
import { connectSessionBus, connectionLost } from '../lib/bus.js';
import { FileGrants } from '../lib/grants/registry.js';
import { FilesService } from '../lib/files.js';
import { CageDefaultApps } from '../lib/default-apps.js';
import { LinkOpener, gioOpen, hostDefaultIn, hostHandlersIn, hostMimeView } from '../lib/links.js';
import { portalLinkChooser } from '../lib/link-chooser.js';
import { cageRuntimeDir } from '../lib/sandbox.js';
import { HostSession } from '../lib/display/host-session.js';
import { SessionLife } from '../lib/cage/session-life.js';
import {
  chooseGrantStore,
  copyStore,
  hostClientEnv,
  hostFacts,
  notifyCall,
  refuseRoot,
} from '../lib/service.js';
import { exportService, type ExportedService } from '../dbus/service.js';

// `kagome daemon`: the composition of the service. One session-bus connection, the engine
// (lib/) built over it, and its D-Bus objects (dbus/) exported last: taking the name is what
// callers take to mean the service is ready. It lives here, above both, so that the engine
// never imports its own contract's adapter.

export interface RunningService {
  manager: CageManager;
  bus: ReturnType<typeof dbus.sessionBus>;
  stop(opts?: { stopCages?: boolean }): Promise<void>;
}

export async function startService(env: Env, log: Logger): Promise<RunningService> {
  refuseRoot(process.getuid?.() ?? 0);
  const paths = pathsFromEnv(env);
  requireRuntimeDir(paths);
  const host = hostFacts(env);
  const store = new CageStore(paths.cagesDir, { hostHome: host.home, homesDir: paths.homesDir });
  const bus = await connectSessionBus(env, (e) =>
    log.warn(
      `dropped a D-Bus message that could not be read: ${e instanceof Error ? e.message : String(e)}`,
    ),
  );
  const grants = new FileGrants(
    chooseGrantStore(bus, env, paths, log),
    () => copyStore(paths, log),
    { transient: path.join(paths.runtimeDir, 'grants'), persistent: paths.persistentGrantsDir },
    cageRuntimeDir(host),
    log,
  );
  const clipboard = new ClipboardBridge(hostClientEnv(env), log);
  const sessionBus = new SessionBusBridge(env);
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
    bridges: [new SoundBridge(env), clipboard, sessionBus],
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
  const cageNotifications = new CageNotifications(busNotificationServer(bus));
  // A cage that can notify (SessionBus=portal) is named to the desktop by its own entry.
  const dataHome = baseDirs(env).dataHome;
  manager.on('state', (name, state) => {
    if (state !== 'running') return;
    void (async () => {
      const config = await store.read(name);
      if (config.sessionBus === 'portal') await writeCageEntry(dataHome, name, config.border);
    })().catch((e: Error) => log.warn(`the desktop entry of the cage ${name}: ${e.message}`));
  });
  const shadows = appShadows(env, store, (m) => log.warn(m));
  // Launches read the original entry, never the shadow that sent them.
  const lookup = { lookup: (id: string) => shadows.resolveOriginal(id) };
  const launcher = new Launcher(manager, lookup, notifier, log, {
    grants,
    defaults: new CageDefaultApps(manager, log),
  });
  const hostView = hostMimeView(env, log);
  const links = new LinkOpener({
    config: (cage) => store.read(cage),
    openInCage: (cage, uri) => launcher.openLink(cage, uri),
    launchShadow: (cage, entry, uri) =>
      launcher.launchApp({ cage, desktopId: entry, uris: [uri], options: {} }),
    hostDefault: (type) => hostDefaultIn(hostView, type),
    hostHandlers: (type) => hostHandlersIn(hostView, type),
    choose: portalLinkChooser(bus),
    openOnHost: gioOpen(env, log),
    log,
  });
  // The watched folders must exist: chokidar does not notice a missing one appear. Made before
  // the name is taken, which callers take to mean the service is ready.
  await Promise.all(
    [shadows.userApps, store.dir].map((d) => fsp.mkdir(d, { recursive: true, mode: 0o700 })),
  );
  // Which desktop session is shown now decides how cages shown in an earlier one are adopted.
  const life = new SessionLife(manager, new HostSession(hostClientEnv(env), log), log);
  await life.begin();
  const adopted = await manager.adoptAll();
  if (adopted.length) log.info(`re-adopted running cages: ${adopted.join(', ')}`);
  await life.settle();
  // Grants of cages that stopped while no service was watching (a crash) end now.
  await grants
    .recover(new Set(adopted))
    .catch((e: Error) => log.warn(`ending grants of stopped cages: ${e.message}`));
  let exported: ExportedService;
  try {
    exported = await exportService(
      bus,
      manager,
      launcher,
      new FilesService(launcher, grants, store),
      new ClipboardCopies(
        { handle: (n) => manager.handle(n), exists: (n) => store.exists(n) },
        clipboard,
        notifier,
        log,
      ),
      {
        cageOfCaller: (pid) => sessionBus.cageOfProxy(pid),
        openLink: (cage, uri) => links.open(cage, uri),
        addNotification: (cage, id, n) => cageNotifications.add(cage, id, n),
        removeNotification: (cage, id) => cageNotifications.remove(cage, id),
      },
    );
  } catch (e) {
    life.close();
    manager.release();
    bus.disconnect();
    throw e;
  }
  log.info(`serving io.kagome.Kagome (cages in ${paths.cagesDir})`);
  const sync = new AppSync({ shadows, store, manager, notifier, log });
  await sync
    .start()
    .catch((e: Error) => log.error(`keeping menu entries in sync is off: ${e.message}`));
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
