import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  Command,
  CONTROL_CHANNEL,
  DESCRIPTOR_BYTES,
  FrameReader,
  PulseFilter,
  commandOf,
  controlFrame,
  rewriteAuth,
  type Frame,
} from '../../lib/bridges/pulse-protocol.js';

// The sound bridge's decisions, on frames built as libpulse builds them. The integration test
// (sound.test.ts) runs the same filter against a real server and real clients.

function frameOf(bytes: Buffer): Frame {
  const [f] = new FrameReader().push(bytes);
  assert.ok(f);
  return f;
}

function command(cmd: number, tag: number, ...args: number[]): Frame {
  return frameOf(controlFrame([cmd, tag, ...args]));
}

function audio(channel: number, bytes: number, flags = 0): Buffer {
  const d = Buffer.alloc(DESCRIPTOR_BYTES + bytes);
  d.writeUInt32BE(bytes, 0);
  d.writeUInt32BE(channel, 4);
  d.writeUInt32BE(flags, 16);
  return d;
}

function auth(version: number, cookie: Buffer): Buffer {
  const head = controlFrame([Command.AUTH, 1, version]);
  const x = Buffer.alloc(5);
  x[0] = 0x78;
  x.writeUInt32BE(cookie.length, 1);
  const out = Buffer.concat([head, x, cookie]);
  out.writeUInt32BE(out.length - DESCRIPTOR_BYTES, 0);
  return out;
}

describe('PulseAudio frames', () => {
  it('are split however the bytes arrive', () => {
    const stream = Buffer.concat([
      controlFrame([Command.GET_SERVER_INFO, 7]),
      audio(0, 1000),
      controlFrame([Command.STAT, 8]),
    ]);
    for (const step of [1, 3, 20, 21, 999, stream.length]) {
      const r = new FrameReader();
      const frames: Frame[] = [];
      for (let i = 0; i < stream.length; i += step)
        frames.push(...r.push(stream.subarray(i, i + step)));
      assert.deepEqual(
        frames.map((f) => [f.channel, f.payload.length]),
        [
          [CONTROL_CHANNEL, 10],
          [0, 1000],
          [CONTROL_CHANNEL, 10],
        ],
        `step ${step}`,
      );
      assert.equal(commandOf(frames[2]!.payload)?.tag, 8);
    }
  });

  it('larger than the server accepts are an error, not a buffer that grows', () => {
    const d = Buffer.alloc(DESCRIPTOR_BYTES);
    d.writeUInt32BE(16 * 1024 * 1024 + 1, 0);
    assert.throws(() => new FrameReader().push(d), /larger than PulseAudio allows/);
  });
});

describe('the sound policy', () => {
  const output = () => new PulseFilter({ record: false });
  const duplex = () => new PulseFilter({ record: true });

  it('lets playback through unchanged', () => {
    const f = command(Command.CREATE_PLAYBACK_STREAM, 3);
    const d = output().fromClient(f);
    assert.equal(d.kind, 'forward');
    assert.equal(d.kind === 'forward' && d.bytes, f.bytes);
    assert.equal(output().fromClient(frameOf(audio(0, 64))).kind, 'forward');
  });

  it('refuses recording without duplex, with the error libpulse reports as "Access denied"', () => {
    const d = output().fromClient(command(Command.CREATE_RECORD_STREAM, 9));
    assert.equal(d.kind, 'answer');
    if (d.kind !== 'answer') return;
    assert.equal(d.refused, 'CREATE_RECORD_STREAM');
    assert.deepEqual(commandOf(frameOf(d.bytes).payload), { command: Command.ERROR, tag: 9 });
    assert.equal(frameOf(d.bytes).payload.readUInt32BE(11), 1);
    assert.equal(duplex().fromClient(command(Command.CREATE_RECORD_STREAM, 9)).kind, 'forward');
  });

  for (const [name, cmd] of Object.entries({
    LOAD_MODULE: Command.LOAD_MODULE,
    UNLOAD_MODULE: Command.UNLOAD_MODULE,
    EXIT: Command.EXIT,
    SET_SINK_VOLUME: Command.SET_SINK_VOLUME,
    REMOVE_SAMPLE: Command.REMOVE_SAMPLE,
    'EXTENSION (87)': 87,
    'SET_DEFAULT_SINK (44)': 44,
    'MOVE_SINK_INPUT (67)': 67,
    'KILL_CLIENT (48)': 48,
    'REGISTER_MEMFD_SHMID (103)': 103,
    'an unknown command': 4000,
  })) {
    it(`refuses ${name} in every mode`, () => {
      for (const f of [output(), duplex()])
        assert.equal(f.fromClient(command(cmd, 1)).kind, 'answer');
    });
  }

  it('answers lists of other programs, modules and cards as empty, and of microphones when not duplex', () => {
    for (const cmd of [
      Command.GET_CLIENT_INFO_LIST,
      Command.GET_MODULE_INFO_LIST,
      Command.GET_SINK_INPUT_INFO_LIST,
      Command.GET_CARD_INFO_LIST,
    ]) {
      const d = duplex().fromClient(command(cmd, 5));
      assert.equal(d.kind, 'answer');
      if (d.kind === 'answer') {
        assert.equal(d.refused, undefined);
        assert.deepEqual(
          frameOf(d.bytes).payload,
          controlFrame([Command.REPLY, 5]).subarray(DESCRIPTOR_BYTES),
        );
      }
    }
    assert.equal(output().fromClient(command(Command.GET_SOURCE_INFO_LIST, 5)).kind, 'answer');
    assert.equal(duplex().fromClient(command(Command.GET_SOURCE_INFO_LIST, 5)).kind, 'forward');
  });

  it("allows volume and info only for the connection's own streams, learnt from the server's replies", () => {
    const f = output();
    assert.equal(
      f.fromClient(command(Command.SET_SINK_INPUT_VOLUME, 1, 42)).kind,
      'answer',
      'not ours yet',
    );
    assert.equal(f.fromClient(command(Command.CREATE_PLAYBACK_STREAM, 2)).kind, 'forward');
    f.fromServer(command(Command.REPLY, 2, 0, 42, 4096));
    assert.equal(f.fromClient(command(Command.SET_SINK_INPUT_VOLUME, 3, 42)).kind, 'forward');
    assert.equal(f.fromClient(command(Command.GET_SINK_INPUT_INFO, 4, 42)).kind, 'forward');
    assert.equal(
      f.fromClient(command(Command.KILL_SINK_INPUT, 5, 41)).kind,
      'answer',
      "another program's stream",
    );
    // A reply to another tag teaches nothing.
    f.fromServer(command(Command.REPLY, 99, 0, 7));
    assert.equal(f.fromClient(command(Command.SET_SINK_INPUT_MUTE, 6, 7)).kind, 'answer');
  });

  it('drops a connection that sends shared-memory references', () => {
    assert.equal(output().fromClient(frameOf(audio(0, 16, 0x80000000))).kind, 'close');
  });
});

describe('AUTH', () => {
  const cookie = Buffer.alloc(256, 0xab);
  const zeros = Buffer.alloc(256);

  it('loses the shared-memory and memfd capability bits and keeps the version', () => {
    const out = rewriteAuth(frameOf(auth(0xc0000023, zeros)), undefined);
    assert.equal(frameOf(out).payload.readUInt32BE(11), 0x23);
    assert.deepEqual(out.subarray(out.length - 256), zeros);
  });

  it("gets the host's cookie only when the bridge has one to give", () => {
    const out = rewriteAuth(frameOf(auth(0x80000023, zeros)), cookie);
    assert.deepEqual(out.subarray(out.length - 256), cookie);
    const filter = new PulseFilter({ record: false, cookie });
    const d = filter.fromClient(frameOf(auth(35, zeros)));
    assert.ok(d.kind === 'forward' && d.bytes.subarray(d.bytes.length - 256).equals(cookie));
  });
});
