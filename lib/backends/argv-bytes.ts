import type { ArgValue } from '../../xdg/exec.js';

// Node hands argv to execve(2) as UTF-8 text, so a file name that is not valid UTF-8 (legal on
// Linux, and a file a user may well open) cannot be passed to a program directly. When an
// argument is such bytes, the program is started through /bin/sh, which rebuilds each
// argument from an escaped ASCII form with printf's %b (\0NNN octal escapes) and execs the
// program: sh is byte-clean, and the escaped form is data to printf, never code. The trailing
// x keeps $(...) from eating trailing newlines. Plain text arguments take no detour.

const REBUILD =
  'n=$#; while [ "$n" -gt 0 ]; do a=$(printf \'%bx\' "$1"); set -- "$@" "${a%x}"; shift; n=$((n - 1)); done; exec "$@"';

/** An argument as printf %b input: printable ASCII as it is, a backslash doubled, every other byte \0NNN. */
export function printfEscape(arg: ArgValue): string {
  let out = '';
  for (const b of Buffer.from(arg)) {
    if (b === 0x5c) out += '\\\\';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += '\\0' + b.toString(8).padStart(3, '0');
  }
  return out;
}

/** argv that execve can take: unchanged when it is all text, else wrapped to be rebuilt by sh. */
export function execArgv(argv: readonly ArgValue[]): string[] {
  if (argv.every((a): a is string => typeof a === 'string')) return [...argv];
  return ['/bin/sh', '-c', REBUILD, 'kagome-args', ...argv.map(printfEscape)];
}
