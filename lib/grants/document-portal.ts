import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import dbus from 'dbus-next';
import { KagomeError } from '../errors.js';
import type { Bus } from '../bus.js';
import type { HostFile } from './host-file.js';
import type { GrantStore, ProvidedGrant } from './grant.js';

// Grants through xdg-document-portal, the store flatpak uses: the service hands the portal
// O_PATH descriptors (AddFull) for the cage's app id, and the portal's FUSE file system shows
// each file under by-app/APP_ID/DOC_ID/NAME, checking every access against the permissions:
// read-only really is read-only, writes reach the host file, and the host file's mode,
// owner and ACLs are never touched. The cage gets by-app/APP_ID bind-mounted, so documents
// added while it runs appear in it.

const DEST = 'org.freedesktop.portal.Documents';
const OBJECT = '/org/freedesktop/portal/documents';
const IFACE = 'org.freedesktop.portal.Documents';
const REUSE_EXISTING = 1;
const PERSISTENT = 2;
const ALL_PERMISSIONS = ['read', 'write', 'grant-permissions', 'delete'];
const CALL_TIMEOUT_MS = 10_000;
// dbus-daemon's default max_message_unix_fds: a message with more descriptors makes the bus
// drop the sender's whole connection (the service's), so AddFull gets at most this many.
export const MAX_FDS_PER_MESSAGE = 16;

/** The portal's app id for a cage: a valid application id for every cage name (elements may not start with a digit). */
export function cageAppId(cage: string): string {
  return `io.kagome.Cage_${cage}`;
}

export class DocumentPortalStore implements GrantStore {
  readonly kind = 'document-portal' as const;

  private constructor(
    private readonly bus: Bus,
    readonly mountPoint: string,
  ) {}

  /** Reach the portal (D-Bus activation starts it); throws NotSupported with the reason when it cannot serve. */
  static async connect(bus: Bus): Promise<DocumentPortalStore> {
    if (!fs.existsSync('/dev/fuse')) {
      throw new KagomeError(
        'NotSupported',
        'there is no /dev/fuse on this machine, so the document portal cannot run',
      );
    }
    let reply: unknown[];
    try {
      reply = await call(bus, 'GetMountPoint', '', []);
    } catch (e) {
      throw new KagomeError(
        'NotSupported',
        `the document portal (xdg-document-portal, Debian package xdg-desktop-portal) is not available: ${(e as Error).message}`,
      );
    }
    const mountPoint = (reply[0] as Buffer).toString('utf8').replace(/\0+$/, '');
    try {
      await fsp.stat(path.join(mountPoint, 'by-app'));
    } catch (e) {
      throw new KagomeError(
        'NotSupported',
        `the document portal says it is mounted at ${mountPoint}, but that cannot be read: ${(e as Error).message}`,
      );
    }
    return new DocumentPortalStore(bus, mountPoint);
  }

  async folderFor(cage: string): Promise<string> {
    // The portal creates an app's folder when it is first looked up.
    const dir = path.join(this.mountPoint, 'by-app', cageAppId(cage));
    await fsp.stat(dir);
    return dir;
  }

  async add(
    cage: string,
    files: readonly HostFile[],
    opts: { persistent: boolean },
  ): Promise<ProvidedGrant[]> {
    const flags = REUSE_EXISTING | (opts.persistent ? PERSISTENT : 0);
    const out: ProvidedGrant[] = new Array(files.length);
    // AddFull takes one permission list per call: one call for read-only files, one for writable ones.
    for (const writable of [false, true]) {
      const all = files.map((f, i) => (f.writable === writable ? i : -1)).filter((i) => i >= 0);
      for (let start = 0; start < all.length; start += MAX_FDS_PER_MESSAGE) {
        const idx = all.slice(start, start + MAX_FDS_PER_MESSAGE);
        const reply = await call(this.bus, 'AddFull', 'ahusas', [
          idx.map((i) => files[i]!.fd),
          flags,
          cageAppId(cage),
          writable ? ['read', 'write'] : ['read'],
        ]);
        const ids = reply[0] as string[];
        idx.forEach((fileIndex, k) => {
          out[fileIndex] = {
            id: ids[k]!,
            name: Buffer.from(
              path.posix.basename(files[fileIndex]!.path.toString('latin1')),
              'latin1',
            ),
          };
        });
      }
    }
    return out;
  }

  documentFolder(cage: string, id: string): string {
    return path.join(this.mountPoint, 'by-app', cageAppId(cage), id);
  }

  /**
   * A file a program makes in a document's folder is the portal's temporary file for that app,
   * kept in the host folder as .xdp-NAME-XXXXXX; the portal leaves it there when the document
   * is revoked or deleted (seen: LibreOffice's lock file of a cage that was stopped stayed in
   * the user's folder). Everything but the document goes first.
   */
  async clearBeside(cage: string, grant: { id: string; name: Buffer }): Promise<void> {
    const dir = Buffer.from(this.documentFolder(cage, grant.id));
    let names: Buffer[];
    try {
      names = await fsp.readdir(dir, { encoding: 'buffer' });
    } catch {
      return;
    }
    for (const n of names) {
      if (n.equals(grant.name)) continue;
      await fsp.unlink(Buffer.concat([dir, Buffer.from('/'), n])).catch(() => undefined);
    }
  }

  async revoke(cage: string, grant: { id: string; name?: Buffer }): Promise<void> {
    if (grant.name) await this.clearBeside(cage, { id: grant.id, name: grant.name });
    try {
      await call(this.bus, 'RevokePermissions', 'ssas', [
        grant.id,
        cageAppId(cage),
        ALL_PERMISSIONS,
      ]);
      // A document no application may use any more is removed; one that a flatpak app (or
      // another cage) still holds stays.
      const info = await call(this.bus, 'Info', 's', [grant.id]);
      if (Object.keys((info[1] as Record<string, unknown>) ?? {}).length === 0)
        await call(this.bus, 'Delete', 's', [grant.id]);
    } catch (e) {
      // Documents that are already gone (the portal restarted) need no revoking.
      if (
        !/NotFound|Invalid document|not found/i.test(
          String((e as { type?: string }).type ?? '') + (e as Error).message,
        )
      )
        throw e;
    }
  }

  async close(): Promise<void> {}
}

async function call(
  bus: Bus,
  member: string,
  signature: string,
  body: unknown[],
): Promise<unknown[]> {
  const msg = new dbus.Message({
    destination: DEST,
    path: OBJECT,
    interface: IFACE,
    member,
    signature,
    body,
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const reply = await Promise.race([
      bus.call(msg),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `the document portal did not answer ${member} within ${CALL_TIMEOUT_MS / 1000} s`,
              ),
            ),
          CALL_TIMEOUT_MS,
        );
      }),
    ]);
    return reply?.body ?? [];
  } catch (e) {
    const err = e as { type?: string; text?: string; message?: string };
    if (err.type)
      throw Object.assign(new Error(`${err.type}: ${err.text ?? ''}`), { type: err.type });
    throw e;
  } finally {
    clearTimeout(timer);
  }
}
