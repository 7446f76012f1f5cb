import fs from 'node:fs';
import path from 'node:path';
import type { EventEmitter } from 'node:events';
import dbus from 'dbus-next';
import { KagomeError } from './errors.js';
import type { Env } from './runtime/paths.js';
import { setCloexec } from './runtime/cloexec.js';

// The session-bus connection. Files1 receives file descriptors and the document portal is
// sent them, so the connection goes through dbus-next's native transport (usocket) with fd
// negotiation. usocket creates its socket and receives descriptors without close-on-exec;
// left so, every process the service spawned (bwrap, and through it every program in every
// cage) would inherit the service's bus connection, a way out of the cage onto the host bus,
// and any file a caller passed. Both are made close-on-exec here, the received ones in the
// same native callback that delivers them, before any other JavaScript (and so any spawn) runs.

export type Bus = ReturnType<typeof dbus.sessionBus>;

interface USocketLike extends EventEmitter {
  fd?: number;
  supportsUnixFd?: boolean;
}

const lostBuses = new WeakSet<object>();

/** Whether the bus's connection itself is gone (its stream ended or failed), not one message. */
export function connectionLost(bus: Bus): boolean {
  return lostBuses.has(bus);
}

/**
 * dbus-next parses messages inside its stream's 'readable' handler, and some malformed ones
 * make it throw there: an `h` argument naming a descriptor the message did not carry ("No FDs
 * available"), which any caller can send. Uncaught, that ended the service and every caller's
 * session with it. Each throw has already consumed its message, so the handler is simply run
 * again to read the rest; the dropped message's caller gets no reply (dbus-next gives us no
 * way to answer a message it could not read).
 */
function guardParser(
  connection: EventEmitter,
  stream: USocketLike,
  onDropped: (e: unknown) => void,
): void {
  // The parser's listener is added right after the connection says 'connect' (the handshake's
  // own, removed by then, must stay as it is): only that one is wrapped.
  connection.once('connect', () => {
    const on = stream.on;
    stream.on = ((event: string | symbol, listener: (...args: unknown[]) => void) => {
      stream.on = on;
      if (event !== 'readable') return on.call(stream, event, listener);
      return on.call(stream, event, guard(listener));
    }) as typeof stream.on;
  });
  const guard = (listener: (...args: unknown[]) => void) =>
    function guarded(this: unknown, ...args: unknown[]) {
      for (let dropped = 0; dropped < 10000; dropped++) {
        try {
          listener.apply(this, args);
          return;
        } catch (e) {
          onDropped(e);
        }
      }
    };
}

export function sessionBusAddress(env: Env): string {
  if (env.DBUS_SESSION_BUS_ADDRESS) return env.DBUS_SESSION_BUS_ADDRESS;
  const candidate = env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, 'bus') : undefined;
  if (candidate && fs.existsSync(candidate)) return `unix:path=${candidate}`;
  throw new KagomeError(
    'Failed',
    'no session bus: DBUS_SESSION_BUS_ADDRESS is not set and $XDG_RUNTIME_DIR/bus does not exist; run kagome inside a desktop session',
  );
}

/** The first unix:path= address: the only kind that can carry file descriptors without leaking. */
export function unixPathAddress(address: string): string {
  const found = address.split(';').find((a) => /^unix:(.*,)?path=/.test(a));
  if (!found) {
    throw new KagomeError(
      'Failed',
      `the session bus address ${address} has no unix:path= socket; kagome needs one (abstract sockets would leak into cages through their network namespace, TCP cannot pass files). dbus-broker and dbus-daemon under systemd provide one`,
    );
  }
  return found;
}

/** Connect to the session bus with fd passing; resolves once the bus has answered Hello (the socket close-on-exec). */
export async function connectSessionBus(
  env: Env,
  onDropped: (e: unknown) => void = () => undefined,
): Promise<Bus> {
  // dbus-next's typings lack negotiateUnixFd, which its connection code reads.
  const options = { busAddress: unixPathAddress(sessionBusAddress(env)), negotiateUnixFd: true };
  const bus = dbus.sessionBus(options as { busAddress: string });
  const connection = (bus as unknown as { _connection: EventEmitter & { stream: USocketLike } })
    ._connection;
  const stream = connection.stream;
  if (stream.supportsUnixFd === undefined) {
    bus.disconnect();
    throw new KagomeError(
      'MissingProgram',
      "dbus-next is not using its native socket module (usocket), so files cannot be passed over D-Bus; reinstall kagome's node modules with a C++ compiler present (Debian packages g++ make python3)",
    );
  }
  stream.on('fds', (fds: number[]) => fds.forEach(setCloexec));
  guardParser(connection, stream, onDropped);
  // dbus-next reports a lost connection only for errors; usocket signals the bus going away
  // (its daemon stopped, the session ended) by the end of its stream, which dbus-next ignores.
  // Without this, a service whose bus is gone would live on, serving nobody.
  stream.once('end', () => {
    lostBuses.add(bus);
    bus.emit('error', new Error('the session bus closed the connection'));
  });
  // Before dbus-next's own listener, which reports the failure on the bus.
  stream.prependOnceListener('error', () => lostBuses.add(bus));
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) =>
      reject(new KagomeError('Failed', `cannot connect to the session bus: ${e.message}`));
    stream.once('error', onError);
    bus.once('error', onError);
    stream.once('connected', () => setCloexec(stream.fd!));
    // Until the bus has answered Hello: it then reads messages, not the authentication. A
    // message sent before that (dbus-next sends it right behind BEGIN and Hello) can reach
    // dbus-daemon in the same read as the authentication's last line, which takes no
    // descriptors: the message's file was lost and the daemon dropped the connection for a
    // message short of the descriptors it declares (a grant's caller then waited forever).
    bus.once('connect', () => {
      stream.off('error', onError);
      bus.off('error', onError);
      resolve();
    });
  });
  return bus;
}
