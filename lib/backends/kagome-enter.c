/*
 * kagome-enter: start a program inside a running bubblewrap cage.
 *
 *   kagome-enter [--seccomp FILE] [--nproc N] PID START CWD FALLBACK_CWD -- PROGRAM [ARG...]
 *
 * PID is the cage's init as the host sees it and START its start time (field 22 of
 * /proc/PID/stat), so a reused pid is never entered. The environment is the program's.
 *
 * Why not nsenter: for an ordinary user, bubblewrap (not setuid) with --dev makes two user
 * namespaces. The outer one (U1) owns the cage's ipc, uts, net, cgroup, pid and mount
 * namespaces; the inner one (U2) holds its processes, and is the only one a /proc file names.
 * nsenter joins U2 first and then lacks CAP_SYS_ADMIN over the namespaces U1 owns. So this
 * joins U1 (found with NS_GET_USERNS on the cage's ipc namespace), then every other namespace
 * and the cage's root, then U2, as the cage's own processes are.
 *
 * Why the working directory is chosen here, after entering: a directory opened on the host
 * (nsenter --wd) stays the host's, and a program could walk the host's tree from it with
 * relative paths. CWD is looked up inside the cage's root; if it is not a directory there,
 * FALLBACK_CWD (the cage's home), then /.
 *
 * Every capability is dropped and no_new_privs set before the program runs, in this process
 * and in the child, which is what runs the program: joining a pid namespace applies to
 * children only. This process waits and exits with the program's status (128+N for signal
 * N), forwarding TERM, INT, HUP, QUIT, USR1 and USR2, so the service sees one process per
 * program as it did with nsenter.
 *
 * With --seccomp, FILE (a BPF program, the cage's filter, read before entering) is loaded
 * after no_new_privs: a filter passes only to children, and a program carried in is not a
 * child of the cage's first process, which bwrap filtered.
 *
 * With --nproc, RLIMIT_NPROC (soft and hard) is N once inside: since Linux 5.14 the kernel
 * counts it per user namespace, so it bounds the cage's own processes and threads together,
 * whatever they fork, and none of the person's others; raising it again needs a capability
 * in the host's namespace. (Set on bwrap before the namespaces exist, it would count every
 * process of the person's at that moment.)
 *
 * Any mode may begin with `--cgroup FILE` (repeated): the cage's cgroup.procs files, joined
 * before anything else. `kagome-enter --cgroup FILE... --exec -- PROGRAM` only does that and
 * runs PROGRAM: how bwrap itself is started in the cage's cgroup before it forks the cage.
 *
 *   kagome-enter --cgroup FILE... --await
 *
 * joins the cgroups now and reads the rest of its work from standard input, to its end:
 * LOG \0 N \0 then N environment entries and then the arguments of any mode above, each
 * ending in \0. LOG (a file that exists; no link is followed) becomes the program's output,
 * /dev/null its input. Input that ends with nothing read is not an error: the service that
 * kept this waiting has gone, or no longer needs it. Why wait: moving a process into a cgroup
 * makes the kernel wait for an RCU grace period (cgroup_threadgroup_rwsem's write side),
 * 12-16 ms measured per launch on the test machines, more than the rest of a launch; the
 * service keeps one of these per cage, joined ahead of time, and a launch only writes to it.
 *
 *   kagome-enter --outer-userns [--net] PID START -- PROGRAM [ARG...]
 *
 * only joins U1 and runs PROGRAM there, in the host's other namespaces: slirp4netns, which
 * must attach to the cage's network namespace, needs the user namespace that owns it, and no
 * /proc path names U1 (slirp4netns given the pid opens /proc/PID/ns/user, which is U2 as soon
 * as bwrap has made it, and then fails with EPERM).
 *
 * With --net it also joins the cage's network namespace, still as U1, which owns it: that is
 * where nft installs a cage's Network=internet rules. The cage's own programs live in U2 (or
 * in namespaces they make below it) and have no capability in U1, so they cannot change what
 * this installs. PROGRAM keeps U1's capabilities (U1 maps the person to uid 0).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/nsfs.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "kagome-enter: %s: %s\n", what, strerror(errno));
  exit(125);
}

static void fail(const char *what) {
  fprintf(stderr, "kagome-enter: %s\n", what);
  exit(125);
}

/* Field 22 of stat, counted after the last ')' since the command name may hold spaces. */
static int start_time_matches(int procdir, const char *want) {
  char buf[4096];
  int fd = openat(procdir, "stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  p += 2; /* ") " then field 3 */
  for (int field = 3; field < 22 && p; field++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  if (!p) return 0;
  size_t len = strcspn(p, " ");
  return strlen(want) == len && strncmp(p, want, len) == 0;
}

static int open_ns(int procdir, const char *name) {
  char path[64];
  snprintf(path, sizeof path, "ns/%s", name);
  int fd = openat(procdir, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  return fd;
}

static void drop_capabilities(void) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs");
  for (int cap = 0; cap <= 63; cap++) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) die("dropping the bounding set");
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) die("clearing ambient capabilities");
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) != 0) die("dropping capabilities");
}

/* The whole filter, read while the host's files are still reachable. */
static struct sock_fprog read_filter(const char *file) {
  static struct sock_filter insns[BPF_MAXINSNS];
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) die(file);
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, (char *)insns + got, sizeof insns - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die(file);
    if (n == 0) break;
    got += (size_t)n;
    if (got == sizeof insns) fail("the seccomp filter is larger than a BPF program may be");
  }
  close(fd);
  if (got == 0 || got % sizeof *insns != 0) fail("the seccomp filter is not a BPF program");
  struct sock_fprog prog = {(unsigned short)(got / sizeof *insns), insns};
  return prog;
}

static int is_dir(const char *path) {
  struct stat st;
  return path[0] == '/' && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static volatile pid_t child_pid;

static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

static int open_pinned(const char *pid, const char *start) {
  if (strspn(pid, "0123456789") != strlen(pid) || !*pid) fail("PID must be a number");
  /* A descriptor of /proc/PID pins that process: if the pid is reused, lookups under it fail. */
  char procpath[64];
  snprintf(procpath, sizeof procpath, "/proc/%s", pid);
  int procdir = open(procpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procdir < 0) die("the cage's init process");
  if (!start_time_matches(procdir, start)) fail("the cage's init process is gone (its pid now names another process)");
  return procdir;
}

static int outer_userns(int ipc) {
  int fd = ioctl(ipc, NS_GET_USERNS);
  if (fd < 0) die("finding the user namespace that owns the cage");
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

/*
 * Writing 0 to a cgroup.procs file moves the writer; its children follow. Done first, on the
 * host's paths, so everything this starts counts against the cage's limits, not the service's.
 */
static void join_cgroup(const char *procs) {
  int fd = open(procs, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 || write(fd, "0", 1) != 1) die("joining the cage's cgroup (its limits)");
  close(fd);
}

/* Launch requests are as large as the kernel lets a command line and environment be. */
#define MAX_REQUEST (4 << 20)

extern char **environ;

/* Reads the request (see --await above); returns the new argv, argv0 first, and sets *argc. */
static char **await_request(char *argv0, int *argc) {
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  if (!buf) die("reading the launch request");
  for (;;) {
    if (len == cap) {
      if (cap >= MAX_REQUEST) fail("the launch request is larger than a command line may be");
      cap *= 2;
      if (!(buf = realloc(buf, cap))) die("reading the launch request");
    }
    ssize_t n = read(0, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("reading the launch request");
    if (n == 0) break;
    len += (size_t)n;
  }
  if (len == 0) exit(0);
  if (buf[len - 1] != 0) fail("the launch request is cut short");
  size_t count = 0;
  for (size_t i = 0; i < len; i++) count += buf[i] == 0;
  char **field = calloc(count, sizeof *field);
  if (!field) die("reading the launch request");
  for (size_t i = 0, k = 0; i < len; i += strlen(buf + i) + 1) field[k++] = buf + i;
  char *end;
  if (count < 2) fail("the launch request has no log and no environment count");
  unsigned long n_env = strtoul(field[1], &end, 10);
  if (*end || !*field[1] || n_env > count - 2) fail("the launch request's environment count is wrong");
  size_t n_args = count - 2 - n_env;
  char **env = calloc(n_env + 1, sizeof *env), **args = calloc(n_args + 2, sizeof *args);
  if (!env || !args) die("reading the launch request");
  memcpy(env, field + 2, n_env * sizeof *env);
  args[0] = argv0;
  memcpy(args + 1, field + 2 + n_env, n_args * sizeof *args);
  int log = open(field[0], O_WRONLY | O_APPEND | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log < 0 || null < 0) die("opening the program's log");
  if (dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) die("opening the program's log");
  close(log);
  close(null);
  environ = env;
  free(field);
  *argc = (int)n_args + 1;
  return args;
}

int main(int argc, char **argv) {
  while (argc >= 3 && strcmp(argv[1], "--cgroup") == 0) {
    join_cgroup(argv[2]);
    argv += 2;
    argc -= 2;
  }
  if (argc == 2 && strcmp(argv[1], "--await") == 0) argv = await_request(argv[0], &argc);
  if (argc >= 3 && strcmp(argv[1], "--exec") == 0) {
    if (strcmp(argv[2], "--") != 0 || argc < 4) fail("usage: kagome-enter --cgroup FILE... --exec -- PROGRAM [ARG...]");
    execvp(argv[3], &argv[3]);
    die(argv[3]);
  }
  if (argc >= 2 && strcmp(argv[1], "--outer-userns") == 0) {
    int with_net = argc >= 3 && strcmp(argv[2], "--net") == 0;
    char **a = argv + 2 + with_net; /* PID START -- PROGRAM [ARG...] */
    if (argc - 2 - with_net < 4 || strcmp(a[2], "--") != 0) fail("usage: kagome-enter --outer-userns [--net] PID START -- PROGRAM [ARG...]");
    int procdir = open_pinned(a[0], a[1]);
    int ipc = open_ns(procdir, "ipc");
    int net = with_net ? open_ns(procdir, "net") : -1;
    int outer = outer_userns(ipc);
    if (setns(outer, CLONE_NEWUSER) != 0 && errno != EINVAL) die("joining the cage's outer user namespace");
    if (net >= 0 && setns(net, CLONE_NEWNET) != 0) die("joining the cage's network namespace");
    execvp(a[3], &a[3]);
    die(a[3]);
  }
  struct sock_fprog filter = {0, NULL};
  if (argc >= 3 && strcmp(argv[1], "--seccomp") == 0) {
    filter = read_filter(argv[2]);
    argv += 2;
    argc -= 2;
  }
  rlim_t nproc = 0;
  if (argc >= 3 && strcmp(argv[1], "--nproc") == 0) {
    char *end;
    nproc = strtoul(argv[2], &end, 10);
    if (*end || nproc == 0) fail("--nproc takes a positive number");
    argv += 2;
    argc -= 2;
  }
  if (argc < 7 || strcmp(argv[5], "--") != 0) fail("usage: kagome-enter [--seccomp FILE] [--nproc N] PID START CWD FALLBACK_CWD -- PROGRAM [ARG...]");
  const char *pid = argv[1], *start = argv[2], *cwd = argv[3], *fallback = argv[4];
  char **program = &argv[6];
  int procdir = open_pinned(pid, start);

  int inner_user = open_ns(procdir, "user");
  int ipc = open_ns(procdir, "ipc");
  int outer_user = outer_userns(ipc);
  int uts = open_ns(procdir, "uts"), net = open_ns(procdir, "net"), pidns = open_ns(procdir, "pid");
  int mnt = open_ns(procdir, "mnt");
  int cgroup = openat(procdir, "ns/cgroup", O_RDONLY | O_CLOEXEC); /* optional, like --unshare-cgroup-try */
  int root = openat(procdir, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) die("the cage's root");

  /* As root (or with setuid bwrap) there is one user namespace: U1 is U2, or the host's own. */
  struct stat a, b;
  int separate = fstat(outer_user, &a) == 0 && fstat(inner_user, &b) == 0 && (a.st_ino != b.st_ino || a.st_dev != b.st_dev);
  if (setns(outer_user, CLONE_NEWUSER) != 0 && errno != EINVAL) die("joining the cage's outer user namespace");
  if (setns(ipc, CLONE_NEWIPC) != 0) die("joining the cage's ipc namespace");
  if (setns(uts, CLONE_NEWUTS) != 0) die("joining the cage's uts namespace");
  if (setns(net, CLONE_NEWNET) != 0) die("joining the cage's network namespace");
  if (cgroup >= 0 && setns(cgroup, CLONE_NEWCGROUP) != 0) die("joining the cage's cgroup namespace");
  if (setns(pidns, CLONE_NEWPID) != 0) die("joining the cage's pid namespace");
  if (setns(mnt, CLONE_NEWNS) != 0) die("joining the cage's mount namespace");
  if (fchdir(root) != 0 || chroot(".") != 0) die("entering the cage's root");
  if (separate && setns(inner_user, CLONE_NEWUSER) != 0) die("joining the cage's user namespace");
  close(procdir);

  /* Only now, inside: nothing of the host is reachable from here. */
  if (chdir(is_dir(cwd) ? cwd : is_dir(fallback) ? fallback : "/") != 0) die("changing to the working directory");
  if (nproc) {
    struct rlimit limit = {nproc, nproc};
    if (setrlimit(RLIMIT_NPROC, &limit) != 0) die("limiting the cage's tasks");
  }
  drop_capabilities();
  if (filter.len && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0) != 0) die("loading the cage's seccomp filter");

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  sigset_t block, old;
  sigemptyset(&block);
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaddset(&block, forwarded[i]);
  /* Signals wait until child_pid is known, so none is lost between fork and the handler. */
  sigprocmask(SIG_BLOCK, &block, &old);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(program[0], program);
    fprintf(stderr, "kagome-enter: cannot run %s: %s\n", program[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  child_pid = child;
  for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaction(forwarded[i], &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) die("waiting for the program");
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}
