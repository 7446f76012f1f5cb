import fs from 'node:fs';
import path from 'node:path';
import dbus from 'dbus-next';
import { KagomeError } from './errors.js';
import type { Env } from './runtime/paths.js';

// The session-bus connection. dbus-next connects `unix:path=` addresses through the native
// usocket module when it is installed, and usocket creates its socket without close-on-exec:
// every process the service spawned (bwrap, and through it every program in every cage) would
// inherit the service's own bus connection, a way out of the cage onto the host bus. It also
// kept the bus name owned after the service was killed. So the address is rewritten to
// dbus-next's `unix:socket=` form, which goes through Node's net module (close-on-exec).
// Passing fds (Files1, issue 5) needs usocket and must first make its fd close-on-exec.

export function safeBusAddress(address: string): string {
  return address
    .split(';')
    .map((a) => a.replace(/^unix:(.*)$/, (_m, params: string) => `unix:${params.split(',').map((p) => p.replace(/^path=/, 'socket=')).join(',')}`))
    .join(';');
}

export function sessionBusAddress(env: Env): string {
  if (env.DBUS_SESSION_BUS_ADDRESS) return env.DBUS_SESSION_BUS_ADDRESS;
  const candidate = env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, 'bus') : undefined;
  if (candidate && fs.existsSync(candidate)) return `unix:path=${candidate}`;
  throw new KagomeError('Failed', 'no session bus: DBUS_SESSION_BUS_ADDRESS is not set and $XDG_RUNTIME_DIR/bus does not exist; run kagome inside a desktop session');
}

export function connectSessionBus(env: Env): ReturnType<typeof dbus.sessionBus> {
  const address = sessionBusAddress(env);
  if (/(^|;)unix:abstract=/.test(address) && !/unix:path=/.test(address)) {
    throw new KagomeError('Failed', `the session bus address ${address} is an abstract socket, which kagome cannot reach without leaking it into cages; use a unix:path= bus (dbus-broker and dbus-daemon under systemd provide one)`);
  }
  return dbus.sessionBus({ busAddress: safeBusAddress(address) });
}
