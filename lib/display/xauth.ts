import crypto from 'node:crypto';

// The Xauthority file format is five length-prefixed big-endian fields; writing it directly
// avoids running xauth and a race on the display number, since FamilyWild matches any display.
const FAMILY_WILD = 0xffff;

function field(b: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

export function newCookie(): Buffer {
  return crypto.randomBytes(16);
}

export function xauthorityEntry(cookie: Buffer): Buffer {
  const family = Buffer.alloc(2);
  family.writeUInt16BE(FAMILY_WILD);
  return Buffer.concat([
    family,
    field(Buffer.alloc(0)),
    field(Buffer.alloc(0)),
    field(Buffer.from('MIT-MAGIC-COOKIE-1')),
    field(cookie),
  ]);
}

const FAMILY_LOCAL = 256;

/**
 * The same cookie as an entry for one display on this host (FamilyLocal): for X clients that
 * do not understand FamilyWild, such as python-xlib (the clipboard bridge's watcher).
 */
export function xauthorityLocalEntry(cookie: Buffer, hostname: string, display: number): Buffer {
  const family = Buffer.alloc(2);
  family.writeUInt16BE(FAMILY_LOCAL);
  return Buffer.concat([
    family,
    field(Buffer.from(hostname)),
    field(Buffer.from(String(display))),
    field(Buffer.from('MIT-MAGIC-COOKIE-1')),
    field(cookie),
  ]);
}

/** The cookie of an entry written by xauthorityEntry. */
export function cookieOf(entry: Buffer): Buffer {
  return entry.subarray(entry.length - 16);
}
