import type { SandboxSpec } from '../sandbox.js';
import type { ArgValue } from '../../xdg/exec.js';

// One interface per concept: every backend (bubblewrap now; podman, docker and LXD later)
// starts a sandbox from a SandboxSpec, runs programs inside the running sandbox, tells
// whether it is alive, and stops it. Its record is plain JSON, kept in the cage's state file
// so that a restarted service can re-adopt the sandbox.

export type SandboxRecord = Record<string, unknown>;

export type FileGrantMode = 'portal' | 'copies' | 'none';

export interface StartIo {
  /** an open file descriptor for the sandbox's own output */
  logFd: number;
  /** host directory for files the backend generates for this cage (passwd, resolv.conf) */
  etcDir: string;
  /** the service's own folder for what it compiles once for all cages (the seccomp filter) */
  cacheDir: string;
  /**
   * folders kagome made for this cage (its runtime folder, its home, its granted copies): a
   * backend whose container user is not the host user may hand these, and only these, over
   */
  ownFolders: string[];
}

export interface ExecRequest {
  /** the program and its arguments; file arguments may be bytes (see argv-bytes.ts) */
  argv: ArgValue[];
  env: Record<string, string>;
  /**
   * the working directory as the cage sees it; chosen inside the cage, never opened on the
   * host (a host directory handle would let the program walk the host's tree)
   */
  cwd: string;
  /** used when `cwd` is not a directory in the cage (the cage's home); then / */
  fallbackCwd?: string;
  /** file descriptor for the program's stderr, and its stdout unless `pipes` */
  logFd: number;
  /** the same log by its path, for a helper that opens it itself (a waiting kagome-enter) */
  logFile?: string;
  /** give the program a stdin and stdout piped to the service (bridges' helpers in the cage) */
  pipes?: boolean;
}

export interface ExecHandle {
  /** host pid of the process that carries the program (it exits with the program's status) */
  pid: number;
  /** resolves with the exit code (or 128+signal) once the program has ended */
  exited: Promise<number>;
  /** with `pipes`: the program's stdin and stdout */
  stdin?: NodeJS.WritableStream & { destroy(): void };
  stdout?: NodeJS.ReadableStream & { destroy(): void };
}

/**
 * R is the backend's own record: its methods take the record its start returned, typed, while
 * the engine holds every backend as a Backend of plain JSON records.
 */
export interface Backend<R extends SandboxRecord = SandboxRecord> {
  readonly kind: string;
  /**
   * How files can be granted to this cage: 'portal', the document portal's FUSE folder mounted
   * in; 'copies', where the engine cannot mount a FUSE folder of the user's (the portal refuses
   * a container daemon's statfs); 'none', for a cage on another machine (a remote LXD)
   */
  fileGrants(spec: SandboxSpec): FileGrantMode;
  /** throws MissingProgram (with the Debian package) when something on the host is missing */
  checkHost(spec: SandboxSpec): void;
  start(spec: SandboxSpec, io: StartIo): Promise<R>;
  /**
   * The record as read back from a state file, checked field by field (runtime/record-check.ts),
   * or what is wrong with it, naming the field: nothing else of the backend trusts such a record.
   */
  checkRecord(v: unknown): R | string;
  /** the path of a program as the cage sees it, or undefined when it has no such program */
  resolveProgram(record: R, program: string, searchPath: string): Promise<string | undefined>;
  exec(record: R, req: ExecRequest): Promise<ExecHandle>;
  /** host path at which the cage's own filesystem can be read, when the backend has one */
  hostPathOf(record: R, pathInCage: string): string | undefined;
  isAlive(record: R): boolean;
  /**
   * For a cage on another machine (a remote LXD), whose folders the host cannot see: the
   * command that runs a program in the cage as its user, and the environment it needs.
   * Displays then reach the cage through it instead of through a shared folder.
   */
  remoteShell?(record: R): { argv: string[]; env: Record<string, string> } | undefined;
  stop(record: R): Promise<void>;
}
