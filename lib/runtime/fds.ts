import fs from 'node:fs';

// Whatever started the service may have left descriptors open without close-on-exec (a
// terminal's pipes, a test runner's channels). Every process the service spawns would inherit
// them, cages included, and neither bwrap nor a shell closes them. libuv opens all of Node's
// own descriptors close-on-exec, so at start-up any descriptor above stderr without that flag
// was inherited, and is closed.
const O_CLOEXEC = 0o2000000;

export function closeInheritedFds(): number[] {
  const closed: number[] = [];
  let fds: string[];
  try {
    fds = fs.readdirSync('/proc/self/fd');
  } catch {
    return closed;
  }
  for (const name of fds) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd <= 2) continue;
    let info: string;
    try {
      info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    const flags = /^flags:\s+([0-7]+)/m.exec(info);
    if (!flags || (parseInt(flags[1]!, 8) & O_CLOEXEC) !== 0) continue;
    try {
      fs.closeSync(fd);
      closed.push(fd);
    } catch {
      /* already closed (readdir listed its own directory fd) */
    }
  }
  return closed;
}
