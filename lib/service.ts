import os from 'node:os';
import path from 'node:path';
import dbus from 'dbus-next';
import type { Env, Paths } from './runtime/paths.js';
import { SCALE_VARIABLES } from './display/host-screen.js';
import type { NotifyCall } from './notify.js';
import type { Logger } from './log.js';
import type { GrantStore } from './grants/grant.js';
import { DocumentPortalStore } from './grants/document-portal.js';
import { CopyStore } from './grants/copy.js';
import type { HostFacts } from './sandbox.js';
import type { Bus } from './bus.js';
import { KagomeError } from './errors.js';

// What the service takes from its environment (who and where it runs, how its host-side
// clients see the display, how notifications and file grants reach the desktop), for the
// composition in bin/daemon.ts and for the CLI.

export function hostFacts(env: Env): HostFacts {
  const info = os.userInfo();
  return {
    uid: info.uid,
    gid: info.gid,
    user: info.username,
    home: env.HOME ?? info.homedir,
    lang: env.LANG,
  };
}

/** What host-side display clients (xpra attach, Xephyr) need from the service's environment. */
export function hostClientEnv(env: Env): Record<string, string> {
  // The scale variables are for the cages' programs, which draw as the host's do (host-screen.ts).
  const keep = [
    'DISPLAY',
    'XAUTHORITY',
    'HOME',
    'USER',
    'LOGNAME',
    'PATH',
    'LANG',
    'LC_ALL',
    'XDG_RUNTIME_DIR',
    'WAYLAND_DISPLAY',
    'XDG_SESSION_TYPE',
    ...SCALE_VARIABLES,
  ];
  const out: Record<string, string> = {};
  for (const k of keep) {
    const v = env[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
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
          {
            urgency: new dbus.Variant('y', a.urgency),
            ...(a.progress !== undefined ? { value: new dbus.Variant('i', a.progress) } : {}),
          },
          a.timeoutMs,
        ],
      }),
    );
    return (reply?.body[0] as number) ?? 0;
  };
}

export function copyStore(paths: Paths, log: Logger): CopyStore {
  return new CopyStore(path.join(paths.runtimeDir, 'files'), log);
}

/**
 * The document portal where it can serve, else copies; KAGOME_FILE_GRANTS=copy forces copies
 * (for machines whose FUSE mounts a backend cannot reach). Which one is used is logged once.
 */
export async function chooseGrantStore(
  bus: Bus,
  env: Env,
  paths: Paths,
  log: Logger,
): Promise<GrantStore> {
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
    log.warn(
      `file grants: ${(e as Error).message}; granted files are copied into cages instead and written back when changed`,
    );
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
