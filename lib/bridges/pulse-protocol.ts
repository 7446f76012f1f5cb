// The few parts of the PulseAudio native protocol the sound bridge must understand to decide,
// packet by packet, what a cage may ask of the host's sound server. Everything else passes
// through untouched, so any client that speaks the protocol (libpulse, PipeWire's libpulse
// shim, browsers' own code) works.
//
// A frame is a 20-byte descriptor (length, channel, offset hi/lo, flags; big-endian u32s) and
// a payload. Channel 0xFFFFFFFF carries commands, as a "tagstruct": each value is preceded by a
// type byte, and every command starts with 'L' command, 'L' tag. Other channels carry audio
// for a stream the connection created, which the server checks itself.
//
// Source: src/pulsecore/{native-common.h,pstream.c,tagstruct.h} and protocol-native.c in
// PulseAudio; command numbers are part of the wire protocol and never change.

export const DESCRIPTOR_BYTES = 20;
export const CONTROL_CHANNEL = 0xffffffff;
/** pstream.c: FRAME_SIZE_MAX_ALLOW; the server drops larger frames too. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Frame flags that reference shared memory (SHMDATA, SHMRELEASE, SHMREVOKE, memfd blocks). */
const FLAG_SHM_MASK = 0xff000000;

const TAG_U32 = 0x4c; // 'L'

/** protocol-native: the client's version word in AUTH carries these capability bits. */
const PROTOCOL_FLAG_SHM = 0x80000000;
const PROTOCOL_FLAG_MEMFD = 0x40000000;

export const ERR_ACCESS = 1;

export const Command = {
  ERROR: 0,
  REPLY: 2,
  CREATE_PLAYBACK_STREAM: 3,
  DELETE_PLAYBACK_STREAM: 4,
  CREATE_RECORD_STREAM: 5,
  DELETE_RECORD_STREAM: 6,
  EXIT: 7,
  AUTH: 8,
  SET_CLIENT_NAME: 9,
  LOOKUP_SINK: 10,
  LOOKUP_SOURCE: 11,
  DRAIN_PLAYBACK_STREAM: 12,
  STAT: 13,
  GET_PLAYBACK_LATENCY: 14,
  CREATE_UPLOAD_STREAM: 15,
  DELETE_UPLOAD_STREAM: 16,
  FINISH_UPLOAD_STREAM: 17,
  PLAY_SAMPLE: 18,
  REMOVE_SAMPLE: 19,
  GET_SERVER_INFO: 20,
  GET_SINK_INFO: 21,
  GET_SINK_INFO_LIST: 22,
  GET_SOURCE_INFO: 23,
  GET_SOURCE_INFO_LIST: 24,
  GET_MODULE_INFO: 25,
  GET_MODULE_INFO_LIST: 26,
  GET_CLIENT_INFO: 27,
  GET_CLIENT_INFO_LIST: 28,
  GET_SINK_INPUT_INFO: 29,
  GET_SINK_INPUT_INFO_LIST: 30,
  GET_SOURCE_OUTPUT_INFO: 31,
  GET_SOURCE_OUTPUT_INFO_LIST: 32,
  GET_SAMPLE_INFO: 33,
  GET_SAMPLE_INFO_LIST: 34,
  SUBSCRIBE: 35,
  SET_SINK_VOLUME: 36,
  SET_SINK_INPUT_VOLUME: 37,
  CORK_PLAYBACK_STREAM: 41,
  FLUSH_PLAYBACK_STREAM: 42,
  TRIGGER_PLAYBACK_STREAM: 43,
  SET_PLAYBACK_STREAM_NAME: 46,
  SET_RECORD_STREAM_NAME: 47,
  KILL_SINK_INPUT: 49,
  KILL_SOURCE_OUTPUT: 50,
  LOAD_MODULE: 51,
  UNLOAD_MODULE: 52,
  GET_RECORD_LATENCY: 57,
  CORK_RECORD_STREAM: 58,
  FLUSH_RECORD_STREAM: 59,
  PREBUF_PLAYBACK_STREAM: 60,
  SET_SINK_INPUT_MUTE: 69,
  SET_PLAYBACK_STREAM_BUFFER_ATTR: 72,
  SET_RECORD_STREAM_BUFFER_ATTR: 73,
  UPDATE_PLAYBACK_STREAM_SAMPLE_RATE: 74,
  UPDATE_RECORD_STREAM_SAMPLE_RATE: 75,
  UPDATE_RECORD_STREAM_PROPLIST: 80,
  UPDATE_PLAYBACK_STREAM_PROPLIST: 81,
  UPDATE_CLIENT_PROPLIST: 82,
  REMOVE_RECORD_STREAM_PROPLIST: 83,
  REMOVE_PLAYBACK_STREAM_PROPLIST: 84,
  REMOVE_CLIENT_PROPLIST: 85,
  GET_CARD_INFO_LIST: 89,
  SET_SOURCE_OUTPUT_VOLUME: 98,
  SET_SOURCE_OUTPUT_MUTE: 99,
} as const;

const C = Command;

// What every cage with sound may do: play, upload event sounds, see and follow the sinks, and
// manage its own streams. Not on these lists, and so refused: loading and unloading modules
// (module-pipe-sink alone would let a cage create files anywhere the user can write), killing
// or moving other programs' streams, changing the host's default devices, volumes, cards and
// ports, the stream-restore database (EXTENSION), shared-memory registration, EXIT.
const PLAYBACK = new Set<number>([
  C.AUTH,
  C.SET_CLIENT_NAME,
  C.CREATE_PLAYBACK_STREAM,
  C.DELETE_PLAYBACK_STREAM,
  C.LOOKUP_SINK,
  C.DRAIN_PLAYBACK_STREAM,
  C.STAT,
  C.GET_PLAYBACK_LATENCY,
  C.CREATE_UPLOAD_STREAM,
  C.DELETE_UPLOAD_STREAM,
  C.FINISH_UPLOAD_STREAM,
  C.PLAY_SAMPLE,
  C.GET_SERVER_INFO,
  C.GET_SINK_INFO,
  C.GET_SINK_INFO_LIST,
  C.SUBSCRIBE,
  C.CORK_PLAYBACK_STREAM,
  C.FLUSH_PLAYBACK_STREAM,
  C.TRIGGER_PLAYBACK_STREAM,
  C.SET_PLAYBACK_STREAM_NAME,
  C.PREBUF_PLAYBACK_STREAM,
  C.SET_PLAYBACK_STREAM_BUFFER_ATTR,
  C.UPDATE_PLAYBACK_STREAM_SAMPLE_RATE,
  C.UPDATE_PLAYBACK_STREAM_PROPLIST,
  C.UPDATE_CLIENT_PROPLIST,
  C.REMOVE_PLAYBACK_STREAM_PROPLIST,
  C.REMOVE_CLIENT_PROPLIST,
]);

const RECORDING = new Set<number>([
  C.CREATE_RECORD_STREAM,
  C.DELETE_RECORD_STREAM,
  C.LOOKUP_SOURCE,
  C.GET_SOURCE_INFO,
  C.GET_SOURCE_INFO_LIST,
  C.GET_RECORD_LATENCY,
  C.CORK_RECORD_STREAM,
  C.FLUSH_RECORD_STREAM,
  C.SET_RECORD_STREAM_NAME,
  C.SET_RECORD_STREAM_BUFFER_ATTR,
  C.UPDATE_RECORD_STREAM_SAMPLE_RATE,
  C.UPDATE_RECORD_STREAM_PROPLIST,
  C.REMOVE_RECORD_STREAM_PROPLIST,
]);

/** Commands whose first argument is a stream index: allowed only for the connection's own streams. */
const OWN_PLAYBACK = new Set<number>([
  C.GET_SINK_INPUT_INFO,
  C.SET_SINK_INPUT_VOLUME,
  C.SET_SINK_INPUT_MUTE,
  C.KILL_SINK_INPUT,
]);
const OWN_RECORD = new Set<number>([
  C.GET_SOURCE_OUTPUT_INFO,
  C.SET_SOURCE_OUTPUT_VOLUME,
  C.SET_SOURCE_OUTPUT_MUTE,
  C.KILL_SOURCE_OUTPUT,
]);

/**
 * Lists of things a cage has no business seeing (other programs, their streams, modules, cards)
 * are answered as empty rather than refused: mixers and browsers show an empty list instead
 * of an error. Without recording, the sources (microphones) are hidden the same way.
 */
const EMPTY_LISTS = new Set<number>([
  C.GET_MODULE_INFO_LIST,
  C.GET_CLIENT_INFO_LIST,
  C.GET_SINK_INPUT_INFO_LIST,
  C.GET_SOURCE_OUTPUT_INFO_LIST,
  C.GET_SAMPLE_INFO_LIST,
  C.GET_CARD_INFO_LIST,
]);

export interface SoundRules {
  /** recording (microphones, monitors of the host's outputs) is allowed */
  record: boolean;
  /**
   * The host's cookie, put into the cage's AUTH when the relay talks to the server's main
   * socket (a server without per-cage sockets); the cage itself never has it.
   */
  cookie?: Buffer;
}

export interface Frame {
  channel: number;
  flags: number;
  /** the whole frame, descriptor included, as it is forwarded */
  bytes: Buffer;
  payload: Buffer;
}

/** Splits a byte stream into frames; throws on frames no PulseAudio peer would send. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const frames: Frame[] = [];
    while (this.pending.length >= DESCRIPTOR_BYTES) {
      const length = this.pending.readUInt32BE(0);
      if (length > MAX_FRAME_BYTES)
        throw new Error(`frame of ${length} bytes is larger than PulseAudio allows`);
      const total = DESCRIPTOR_BYTES + length;
      if (this.pending.length < total) break;
      const bytes = this.pending.subarray(0, total);
      frames.push({
        channel: bytes.readUInt32BE(4),
        flags: bytes.readUInt32BE(16),
        bytes,
        payload: bytes.subarray(DESCRIPTOR_BYTES),
      });
      this.pending = this.pending.subarray(total);
    }
    return frames;
  }
}

/** Command and tag of a control frame, or undefined when the payload does not start with them. */
export function commandOf(payload: Buffer): { command: number; tag: number } | undefined {
  if (payload.length < 10 || payload[0] !== TAG_U32 || payload[5] !== TAG_U32) return undefined;
  return { command: payload.readUInt32BE(1), tag: payload.readUInt32BE(6) };
}

/** The n-th u32 argument after command and tag, when it is one. */
function u32Arg(payload: Buffer, n: number): number | undefined {
  const at = 10 + 5 * n;
  if (payload.length < at + 5 || payload[at] !== TAG_U32) return undefined;
  return payload.readUInt32BE(at + 1);
}

export function controlFrame(values: number[]): Buffer {
  const payload = Buffer.alloc(values.length * 5);
  values.forEach((v, i) => {
    payload[i * 5] = TAG_U32;
    payload.writeUInt32BE(v >>> 0, i * 5 + 1);
  });
  const descriptor = Buffer.alloc(DESCRIPTOR_BYTES);
  descriptor.writeUInt32BE(payload.length, 0);
  descriptor.writeUInt32BE(CONTROL_CHANNEL, 4);
  return Buffer.concat([descriptor, payload]);
}

export type Decision =
  | { kind: 'forward'; bytes: Buffer }
  | { kind: 'answer'; bytes: Buffer; refused?: string }
  | { kind: 'close'; reason: string };

export interface CommandNames {
  [n: number]: string;
}
const NAMES: CommandNames = Object.fromEntries(Object.entries(Command).map(([k, v]) => [v, k]));

export function commandName(n: number): string {
  return NAMES[n] ?? `command ${n}`;
}

/**
 * One cage connection's view of the conversation: decides on each client frame, and learns
 * from the server's replies which streams belong to this connection.
 */
export class PulseFilter {
  private readonly ownSinkInputs = new Set<number>();
  private readonly ownSourceOutputs = new Set<number>();
  /** tags of stream creations awaiting their reply, with the kind of stream */
  private readonly creating = new Map<number, 'playback' | 'record'>();

  constructor(private readonly rules: SoundRules) {}

  fromClient(frame: Frame): Decision {
    if (frame.flags & FLAG_SHM_MASK)
      return {
        kind: 'close',
        reason: 'the client sent shared-memory data, which the bridge does not carry',
      };
    if (frame.channel !== CONTROL_CHANNEL) return { kind: 'forward', bytes: frame.bytes };
    const head = commandOf(frame.payload);
    if (!head) return { kind: 'close', reason: 'a command packet without command and tag' };
    const { command, tag } = head;
    if (command === C.AUTH)
      return { kind: 'forward', bytes: rewriteAuth(frame, this.rules.cookie) };
    if (EMPTY_LISTS.has(command) || (command === C.GET_SOURCE_INFO_LIST && !this.rules.record)) {
      return { kind: 'answer', bytes: controlFrame([C.REPLY, tag]) };
    }
    const allowed =
      PLAYBACK.has(command) ||
      (this.rules.record && RECORDING.has(command)) ||
      (OWN_PLAYBACK.has(command) && this.ownSinkInputs.has(u32Arg(frame.payload, 0) ?? -1)) ||
      (this.rules.record &&
        OWN_RECORD.has(command) &&
        this.ownSourceOutputs.has(u32Arg(frame.payload, 0) ?? -1));
    if (!allowed) {
      return {
        kind: 'answer',
        bytes: controlFrame([C.ERROR, tag, ERR_ACCESS]),
        refused: commandName(command),
      };
    }
    if (command === C.CREATE_PLAYBACK_STREAM) this.creating.set(tag, 'playback');
    if (command === C.CREATE_RECORD_STREAM) this.creating.set(tag, 'record');
    return { kind: 'forward', bytes: frame.bytes };
  }

  /** Server frames always pass; replies to stream creations tell which indexes are ours. */
  fromServer(frame: Frame): void {
    if (frame.channel !== CONTROL_CHANNEL || this.creating.size === 0) return;
    const head = commandOf(frame.payload);
    if (!head) return;
    const kind = this.creating.get(head.tag);
    if (!kind || (head.command !== C.REPLY && head.command !== C.ERROR)) return;
    this.creating.delete(head.tag);
    // The reply to a stream creation is: channel, then the sink input or source output index.
    const index = head.command === C.REPLY ? u32Arg(frame.payload, 1) : undefined;
    if (index === undefined) return;
    (kind === 'playback' ? this.ownSinkInputs : this.ownSourceOutputs).add(index);
  }
}

const TAG_ARBITRARY = 0x78; // 'x': u32 length, then bytes
const COOKIE_BYTES = 256;

/**
 * AUTH is: version (with capability bits), then the 256-byte cookie. Clearing the shared-memory
 * and memfd bits makes the server send all audio through the socket: shared memory would need
 * the cage's /dev/shm or passed descriptors, neither of which crosses the bridge.
 */
export function rewriteAuth(frame: Frame, cookie: Buffer | undefined): Buffer {
  const version = u32Arg(frame.payload, 0);
  if (version === undefined) return frame.bytes;
  const copy = Buffer.from(frame.bytes);
  copy.writeUInt32BE(
    (version & ~(PROTOCOL_FLAG_SHM | PROTOCOL_FLAG_MEMFD)) >>> 0,
    DESCRIPTOR_BYTES + 11,
  );
  const at = DESCRIPTOR_BYTES + 15;
  if (
    cookie?.length === COOKIE_BYTES &&
    copy.length >= at + 5 + COOKIE_BYTES &&
    copy[at] === TAG_ARBITRARY &&
    copy.readUInt32BE(at + 1) === COOKIE_BYTES
  ) {
    cookie.copy(copy, at + 5);
  }
  return copy;
}
