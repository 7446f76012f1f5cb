import { createRequire } from 'node:module';

// Node opens every file and socket close-on-exec, but two descriptors reach the service from
// native code that does not: usocket's D-Bus socket (socket(2) without SOCK_CLOEXEC) and the
// descriptors it receives with messages (recvmsg(2) without MSG_CMSG_CLOEXEC). Every process
// the service spawns (bwrap, and through it every program in every cage) would inherit them:
// the host's session bus, and files a caller passed to be granted. Node has no fcntl(2);
// fs-ext is the maintained native binding that has it.

interface FsExt {
  fcntlSync(fd: number, cmd: 'getfd' | 'setfd', arg?: number): number;
  constants: { FD_CLOEXEC: number };
}

const fsExt = createRequire(import.meta.url)('fs-ext') as FsExt;

export function setCloexec(fd: number): void {
  fsExt.fcntlSync(fd, 'setfd', fsExt.constants.FD_CLOEXEC);
}

export function isCloexec(fd: number): boolean {
  return (fsExt.fcntlSync(fd, 'getfd') & fsExt.constants.FD_CLOEXEC) !== 0;
}
