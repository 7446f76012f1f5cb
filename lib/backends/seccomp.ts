import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { KagomeError } from '../errors.js';

// The seccomp filter of every bubblewrap cage: at least what flatpak blocks
// (common/flatpak-run.c, setup_seccomp), as data. The rules are compiled to a BPF program by
// libseccomp (Debian's python3-seccomp; its Python binding is the maintained way to reach the
// library without a native module of our own), once per rule set, and cached in the service's
// private runtime folder: a cage start only opens the file. bwrap applies it to the cage's
// first process (--seccomp FD); kagome-enter applies the same file to every program it
// carries in, since a filter is inherited only by children and entered programs are not the
// cage's children.

export type Errno = 'EPERM' | 'ENOSYS' | 'EAFNOSUPPORT';

export interface ArgCheck {
  index: number;
  op: 'EQ' | 'NE' | 'GE' | 'MASKED_EQ';
  value: number;
  /** MASKED_EQ: (arg & mask) == value */
  mask?: number;
}

export interface SeccompRule {
  syscall: string;
  errno: Errno;
  args?: ArgCheck[];
}

const CLONE_NEWUSER = 0x10000000;
const TIOCSTI = 0x5412;
const TIOCLINUX = 0x541c;
const PER_LINUX = 0;

/** Socket families a cage may use: unspec, unix, inet, inet6, netlink (flatpak's list). */
const ALLOWED_FAMILIES = [0, 1, 2, 10, 16];
const HIGHEST_FAMILY_CHECKED = 17;

export function seccompRules(opts: { nestedSandbox: boolean }): SeccompRule[] {
  const rules: SeccompRule[] = [
    // dmesg, a dead syscall, process accounting, LDT tricks (an old source of leaks), quotas.
    ...['syslog', 'uselib', 'acct', 'modify_ldt', 'quotactl'].map((syscall) => ({
      syscall,
      errno: 'EPERM' as const,
    })),
    // The kernel keyring is per user, not per namespace: a cage would read and change the
    // host user's keys (seen: keyctl add into the host's @u, unlink of the host's key).
    ...['add_key', 'keyctl', 'request_key'].map((syscall) => ({
      syscall,
      errno: 'EPERM' as const,
    })),
    // NUMA and page migration.
    ...['move_pages', 'mbind', 'get_mempolicy', 'set_mempolicy', 'migrate_pages'].map(
      (syscall) => ({ syscall, errno: 'EPERM' as const }),
    ),
    // Typing into the terminal that started something (CVE-2017-5226), and the Linux console's
    // copy and paste, which does the same (CVE-2023-28100). The mask keeps a 64-bit request
    // with junk in its upper half from passing.
    {
      syscall: 'ioctl',
      errno: 'EPERM',
      args: [{ index: 1, op: 'MASKED_EQ', mask: 0xffffffff, value: TIOCSTI }],
    },
    {
      syscall: 'ioctl',
      errno: 'EPERM',
      args: [{ index: 1, op: 'MASKED_EQ', mask: 0xffffffff, value: TIOCLINUX }],
    },
    // Profiling belongs outside the cage, and perf has been the source of many CVEs.
    { syscall: 'perf_event_open', errno: 'EPERM' },
    // No switching to another personality (it can turn off address randomisation).
    { syscall: 'personality', errno: 'EPERM', args: [{ index: 0, op: 'NE', value: PER_LINUX }] },
    // The mount family: a cage never changes its own filesystem view. chroot stays allowed:
    // Firefox's and Chromium's sandboxes chroot their content processes into an empty folder.
    ...['mount', 'umount2', 'pivot_root'].map((syscall) => ({ syscall, errno: 'EPERM' as const })),
    // The new mount API, and clone3, whose flags live in a struct seccomp cannot read: ENOSYS
    // so that callers fall back to clone, whose flags it can (GHSA-67h7-w3jq-vh4q).
    ...[
      'open_tree',
      'move_mount',
      'fsopen',
      'fsconfig',
      'fsmount',
      'fspick',
      'mount_setattr',
      'clone3',
    ].map((syscall) => ({ syscall, errno: 'ENOSYS' as const })),
  ];
  if (!opts.nestedSandbox) {
    rules.push(
      {
        syscall: 'unshare',
        errno: 'EPERM',
        args: [{ index: 0, op: 'MASKED_EQ', mask: CLONE_NEWUSER, value: CLONE_NEWUSER }],
      },
      {
        syscall: 'clone',
        errno: 'EPERM',
        args: [{ index: 0, op: 'MASKED_EQ', mask: CLONE_NEWUSER, value: CLONE_NEWUSER }],
      },
    );
  }
  for (let family = 0; family < HIGHEST_FAMILY_CHECKED; family++) {
    if (!ALLOWED_FAMILIES.includes(family))
      rules.push({
        syscall: 'socket',
        errno: 'EAFNOSUPPORT',
        args: [{ index: 0, op: 'EQ', value: family }],
      });
  }
  rules.push({
    syscall: 'socket',
    errno: 'EAFNOSUPPORT',
    args: [{ index: 0, op: 'GE', value: HIGHEST_FAMILY_CHECKED }],
  });
  return rules;
}

// Reads the rules as JSON on stdin, writes the BPF program to stdout. On x86_64 the i386
// syscall table is filtered too (a 32-bit program would otherwise call keyctl through int
// 0x80); any other architecture's calls kill the process (libseccomp's default).
const COMPILER = `
import errno, json, os, platform, sys
import seccomp
rules = json.load(sys.stdin)
f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
if platform.machine() == 'x86_64':
    f.add_arch(seccomp.Arch.X86)
ops = {'EQ': seccomp.EQ, 'NE': seccomp.NE, 'GE': seccomp.GE, 'MASKED_EQ': seccomp.MASKED_EQ}
for r in rules:
    args = []
    for a in r.get('args', []):
        if a['op'] == 'MASKED_EQ':
            args.append(seccomp.Arg(a['index'], seccomp.MASKED_EQ, a['mask'], a['value']))
        else:
            args.append(seccomp.Arg(a['index'], ops[a['op']], a['value']))
    try:
        seccomp.resolve_syscall(seccomp.Arch.NATIVE, r['syscall'])
    except ValueError:
        continue  # a syscall this architecture does not have
    f.add_rule(seccomp.ERRNO(getattr(errno, r['errno'])), r['syscall'], *args)
out = os.fdopen(sys.stdout.fileno(), 'wb', closefd=False)
f.export_bpf(out)
out.flush()
`;

/** The system's python3: xpra's and libseccomp's modules are Debian's, not a pyenv's. */
function systemPython(): string {
  return fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/**
 * The compiled filter for these rules, from the cache folder or made now. The folder is the
 * service's own (under XDG_RUNTIME_DIR, 0700), never one a cage can write.
 */
export function seccompProgram(cacheDir: string, rules: SeccompRule[]): string {
  const json = JSON.stringify(rules);
  const digest = crypto
    .createHash('sha256')
    .update(COMPILER)
    .update(json)
    .update(process.arch)
    .digest('hex')
    .slice(0, 16);
  const file = path.join(cacheDir, `seccomp-${digest}.bpf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  let bpf: Buffer;
  try {
    bpf = execFileSync(systemPython(), ['-I', '-c', COMPILER], {
      input: json,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 20000,
    });
  } catch (e) {
    const text = String((e as { stderr?: Buffer }).stderr ?? (e as Error).message);
    if (/No module named .?seccomp/.test(text)) {
      throw new KagomeError(
        'MissingProgram',
        "the seccomp filter of bubblewrap cages is compiled with libseccomp's Python module, which was not found: install the Debian package 'python3-seccomp' (sudo apt-get install python3-seccomp)",
      );
    }
    throw new KagomeError(
      'BackendFailed',
      `could not compile the cages' seccomp filter: ${text.trim().split('\n').slice(-1)[0]}`,
    );
  }
  if (bpf.length === 0 || bpf.length % 8 !== 0)
    throw new KagomeError(
      'BackendFailed',
      `libseccomp wrote a filter of ${bpf.length} bytes, which is not a BPF program`,
    );
  // Written whole under a temporary name, then renamed: a start never reads half a filter.
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, bpf, { mode: 0o600 });
  fs.renameSync(tmp, file);
  return file;
}
