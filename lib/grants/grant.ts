import type { HostFile } from './host-file.js';

// One interface per concept: a grant store makes host files visible in a cage's file folder,
// which the cage sees at a fixed path from its start, so files granted later appear without a
// restart. Two implementations: the document portal (FUSE; writes reach the host file at
// once, nothing about the host file changes) and a copy fallback where FUSE is not available.

/** Where granted files appear inside every cage, as flatpak puts them: <runtime dir>/doc/ID/NAME. */
export const DOC_DIR_NAME = 'doc';

export interface ProvidedGrant {
  /** the folder name under the cage's file folder: the portal's document id, or kagome's own */
  id: string;
  /** the file name the cage sees (the host file's own name, as bytes) */
  name: Buffer;
}

/** A grant from an earlier session; dev and ino are the host file's when it was granted. */
export interface RestoredGrant {
  id: string;
  hostPath: Buffer;
  name: Buffer;
  writable: boolean;
  dev?: number;
  ino?: number;
}

export interface GrantStore {
  readonly kind: 'document-portal' | 'copy';
  /** the host folder to bind-mount at <runtime dir>/doc in the cage; ready when this resolves */
  folderFor(cage: string): Promise<string>;
  add(
    cage: string,
    files: readonly HostFile[],
    opts: { persistent: boolean },
  ): Promise<ProvidedGrant[]>;
  /** the grant's file is no longer seen in the cage; the host file is left exactly as it was */
  revoke(cage: string, grant: { id: string; hostPath: Buffer; writable: boolean }): Promise<void>;
  /** a persistent grant from an earlier session is made visible again, if the store lost it */
  restore?(cage: string, grant: RestoredGrant): Promise<void>;
  /** where, on the host, the cage sees the folder of a granted file that is the host file itself (the portal's) */
  documentFolder?(cage: string, id: string): string;
  /** what the cage made beside a granted file (a lock file, a save's temporary file) is removed */
  clearBeside?(cage: string, grant: { id: string; name: Buffer }): Promise<void>;
  close(): Promise<void>;
}
