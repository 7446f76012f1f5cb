// A private D-Bus session bus per test file: tests can own io.kagome.* names and
// exercise D-Bus activation without touching (or depending on) the desktop's bus.

import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { readFirstLine, spawnDaemon, stopChild, track, unrefDaemon } from './daemons.js';

export interface SessionBusOptions {
  /** Each becomes a <servicedir>, so *.service files there are activatable. */
  servicesDirs?: string[];
  /**
   * Added to the daemon's own environment. dbus-daemon has no config element for the
   * environment of activated services; they inherit the daemon's, so this is how a
   * test hands variables (HOME, XDG_*, ...) to an activated service.
   */
  env?: Record<string, string>;
}

export interface SessionBus {
  address: string;
  pid: number;
  /** DBUS_SESSION_BUS_ADDRESS plus `opts.env`: spread it into a client's environment. */
  env: Record<string, string>;
  /** What the daemon and the services it activated wrote to stdout/stderr (last 64 KiB). */
  log(): string;
  /** Kills the daemon, waits for it to exit, removes its socket directory. Idempotent. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;

export async function startSessionBus(opts: SessionBusOptions = {}): Promise<SessionBus> {
  const dir = await mkdtemp(join(tmpdir(), 'kagome-bus-'));
  const configFile = join(dir, 'bus.conf');
  await writeFile(configFile, busConfig(dir, opts.servicesDirs ?? []));

  let child: ChildProcess;
  try {
    child = await spawnDaemon(
      'dbus-daemon',
      ['--config-file=' + configFile, '--nofork', '--print-address=3'],
      { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } },
      'dbus-daemon',
    );
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  track(child, () => rmSync(dir, { recursive: true, force: true }));

  // Activated services inherit both pipes; one buffer keeps their lines in order.
  const output = new OutputTail();
  child.stdout?.on('data', (c: Buffer) => output.add(c));
  child.stderr?.on('data', (c: Buffer) => output.add(c));

  let address: string;
  try {
    address = await readFirstLine(
      'dbus-daemon',
      child,
      child.stdio[3] as Readable,
      () => output.text(),
      READY_TIMEOUT_MS,
    );
  } catch (err) {
    await stopChild(child);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  unrefDaemon(child);

  let stopped = false;
  return {
    address,
    pid: child.pid ?? -1,
    env: { DBUS_SESSION_BUS_ADDRESS: address, ...opts.env },
    log: () => output.text(),
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

class OutputTail {
  #text = '';
  add(chunk: Buffer): void {
    this.#text = (this.#text + chunk.toString('utf8')).slice(-65536);
  }
  text(): string {
    return this.#text;
  }
}

function busConfig(socketDir: string, servicesDirs: string[]): string {
  const serviceLines = servicesDirs.map((d) => `  <servicedir>${xml(d)}</servicedir>`).join('\n');
  // Same-uid clients only (the dbus-daemon default without <allow user>); the socket
  // lives in a 0700 mkdtemp dir anyway. Otherwise as open as a desktop session bus.
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=${xml(dbusAddressValue(socketDir))}</listen>
  <auth>EXTERNAL</auth>
  <!-- A desktop session bus's limits (Debian's session.conf), not dbus-daemon's compiled-in
       ones, which refuse a 129th pending call on one connection. -->
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">1000000000</limit>
${serviceLines}
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;
}

function xml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

// D-Bus addresses percent-escape every byte outside a small safe set; a TMPDIR with a
// space or comma would otherwise yield an unparsable <listen>.
function dbusAddressValue(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[-0-9A-Za-z_/.*]/.test(ch) ? ch : '%' + byte.toString(16).padStart(2, '0');
  }
  return out;
}
