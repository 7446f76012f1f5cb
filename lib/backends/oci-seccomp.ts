import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

// The seccomp profile of podman and docker cages: the engine's own default (an allowlist, from
// containers-common's seccomp.json) with what kagome's bubblewrap filter refuses taken out of
// it. The engines' default allows keyctl (a cage would share the host user's kernel keyring),
// perf_event_open, every ioctl including TIOCSTI, and the new mount API.
//
// libseccomp refuses a conditional rule next to an unconditional one for the same syscall, so
// "ioctl, except TIOCSTI and TIOCLINUX" is written as allow rules that cover every other value
// of the request's low 32 bits (the kernel reads no more): one rule per bit in which both
// refused requests agree, allowing the other value of that bit, and one rule for each of the
// few values that agree with both on all of those bits but are neither.
//
// LXD cages get the same refusals, as lines of LXC's policy format (lib/backends/lxd.ts).

export const EPERM = [
  'add_key',
  'keyctl',
  'request_key',
  'perf_event_open',
  'syslog',
  'uselib',
  'acct',
  'modify_ldt',
  'quotactl',
  'move_pages',
  'mbind',
  'get_mempolicy',
  'set_mempolicy',
  'migrate_pages',
];
export const ENOSYS = [
  'open_tree',
  'move_mount',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'mount_setattr',
  'clone3',
];
export const REFUSED_IOCTLS = [0x5412 /* TIOCSTI */, 0x541c /* TIOCLINUX */];
const LOW32 = 0xffffffff;

interface Rule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo: number; op: string }[];
  [k: string]: unknown;
}

/** Allow rules for ioctl that match every request whose low 32 bits are not one of `refused`. */
export function ioctlAllowRules(refused: readonly number[]): Rule[] {
  const rules: Rule[] = [];
  let agree = LOW32;
  for (const r of refused.slice(1)) agree &= ~(r ^ refused[0]!) >>> 0;
  agree >>>= 0;
  for (let bit = 0; bit < 32; bit++) {
    const mask = 2 ** bit;
    if (!(agree & mask)) continue;
    // The refused requests all have the same value at this bit: the other value is allowed.
    const other = refused[0]! & mask ? 0 : mask;
    rules.push({
      names: ['ioctl'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 1, value: mask, valueTwo: other, op: 'SCMP_CMP_MASKED_EQ' }],
    });
  }
  // Requests that agree with the refused ones on every such bit differ only in the others.
  const free = (LOW32 & ~agree) >>> 0;
  const base = (refused[0]! & agree) >>> 0;
  const freeBits = [...Array(32).keys()].filter((b) => free & (2 ** b));
  for (let combo = 0; combo < 2 ** freeBits.length; combo++) {
    let value = base;
    freeBits.forEach((b, i) => {
      if (combo & (1 << i)) value += 2 ** b;
    });
    if (refused.includes(value)) continue;
    rules.push({
      names: ['ioctl'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: 1, value: LOW32, valueTwo: value, op: 'SCMP_CMP_MASKED_EQ' }],
    });
  }
  for (const value of refused)
    rules.push({
      names: ['ioctl'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 1,
      args: [{ index: 1, value: LOW32, valueTwo: value, op: 'SCMP_CMP_MASKED_EQ' }],
    });
  return rules;
}

/** The engine's default profile with kagome's refusals; JSON text. */
export function cageProfile(engineDefault: { syscalls: Rule[]; [k: string]: unknown }): string {
  const taken = new Set([...EPERM, ...ENOSYS, 'ioctl']);
  const syscalls = engineDefault.syscalls
    .map((r) => ({ ...r, names: r.names.filter((n) => !taken.has(n)) }))
    .filter((r) => r.names.length > 0);
  syscalls.push(
    { names: EPERM, action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
    { names: ENOSYS, action: 'SCMP_ACT_ERRNO', errnoRet: 38 },
    ...ioctlAllowRules(REFUSED_IOCTLS),
  );
  return JSON.stringify({ ...engineDefault, syscalls });
}

/** Where podman's default profile lives (containers-common); docker's client takes the same format. */
export const ENGINE_DEFAULT_PROFILE = '/usr/share/containers/seccomp.json';

/**
 * The profile file for container cages, made once per base profile in the service's own cache
 * folder, or undefined when there is no base profile to start from (then the engine's own
 * default applies, and the service log says so).
 */
export function cageProfileFile(
  cacheDir: string,
  base = ENGINE_DEFAULT_PROFILE,
): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(base, 'utf8');
  } catch {
    return undefined;
  }
  const profile = cageProfile(JSON.parse(text) as { syscalls: Rule[] });
  const file = path.join(
    cacheDir,
    `oci-seccomp-${crypto.createHash('sha256').update(profile).digest('hex').slice(0, 16)}.json`,
  );
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, profile, { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}
