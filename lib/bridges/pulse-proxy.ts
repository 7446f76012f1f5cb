import fs from 'node:fs';
import net from 'node:net';
import { FrameReader, PulseFilter, type SoundRules } from './pulse-protocol.js';

// The cage end of the sound bridge: a unix socket in a folder only that cage has, relaying each
// connection to the cage's own socket on the host's sound server and refusing, command by
// command, what the cage's policy does not allow (see pulse-protocol.ts). It runs inside the
// service: audio is a few hundred kilobytes a second, and a relay per connection costs one
// parse of a 20-byte header per packet.

export interface PulseProxyOptions {
  /** where the cage's programs connect (bind-mounted into the cage) */
  listenPath: string;
  /** the host sound server's socket this cage's connections are relayed to */
  upstreamPath: string;
  rules: SoundRules;
  /** a refused command or a dropped connection, for the cage's log */
  onRefused?: (what: string) => void;
}

export class PulseProxy {
  private server: net.Server | undefined;
  private readonly connections = new Set<net.Socket>();

  constructor(private readonly opts: PulseProxyOptions) {}

  async listen(): Promise<void> {
    fs.rmSync(this.opts.listenPath, { force: true });
    const server = net.createServer((client) => this.relay(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.listenPath, () => resolve());
    });
    fs.chmodSync(this.opts.listenPath, 0o600);
    server.on('error', () => undefined);
    this.server = server;
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  private relay(client: net.Socket): void {
    const filter = new PulseFilter(this.opts.rules);
    const upstream = net.connect(this.opts.upstreamPath);
    this.connections.add(client);
    const fromClient = new FrameReader();
    const fromServer = new FrameReader();
    const end = () => {
      this.connections.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    // Back-pressure both ways: a cage that stops reading must not make the service buffer
    // the server's audio without bound, and the other way round.
    const send = (to: net.Socket, from: net.Socket, bytes: Buffer) => {
      if (!to.write(bytes)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    };
    client.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = fromClient.push(chunk);
      } catch (e) {
        this.opts.onRefused?.(`connection dropped: ${(e as Error).message}`);
        return end();
      }
      for (const frame of frames) {
        const d = filter.fromClient(frame);
        if (d.kind === 'close') {
          this.opts.onRefused?.(`connection dropped: ${d.reason}`);
          return end();
        }
        if (d.kind === 'forward') send(upstream, client, d.bytes);
        else {
          if (d.refused) this.opts.onRefused?.(`refused ${d.refused}`);
          send(client, upstream, d.bytes);
        }
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = fromServer.push(chunk);
      } catch {
        return end();
      }
      for (const frame of frames) filter.fromServer(frame);
      send(client, upstream, chunk);
    });
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.destroy();
    this.connections.clear();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(this.opts.listenPath, { force: true });
  }
}
