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
  return Buffer.concat([family, field(Buffer.alloc(0)), field(Buffer.alloc(0)), field(Buffer.from('MIT-MAGIC-COOKIE-1')), field(cookie)]);
}
