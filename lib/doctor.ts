import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { DEBIAN_PACKAGES, findInPath } from './requirements.js';
import { limitsSupport } from './runtime/cgroup.js';
import type { Env } from './runtime/paths.js';

// `kagome doctor`: what this machine lacks for kagome, each thing named the way the person
// fixes it (a Debian package, a sysctl), before a launch fails for it. Read-only: it starts
// nothing and changes nothing.

export type Severity = 'ok' | 'missing' | 'warning';

export interface Finding {
  severity: Severity;
  what: string;
  /** what to do, for anything not ok */
  fix?: string;
}

const SYSTEM_PYTHON = '/usr/bin/python3';

/** Programs every bubblewrap cage needs, and what for. */
const REQUIRED: [program: string, purpose: string][] = [
  ['bwrap', 'runs bubblewrap cages'],
  ['xpra', 'shows cage windows on the host'],
  ['Xvfb', "is each xpra cage's own X server"],
  ['xauth', "writes the cages' X cookies"],
  ['dbus-daemon', "is each cage's own session bus"],
];
/** Programs only some cages need. */
const OPTIONAL: [program: string, purpose: string][] = [
  ['slirp4netns', 'gives cages with Network=full or internet their network'],
  ['nft', 'keeps the host out of cages with Network=internet'],
  ['Xephyr', 'is the nested display of Display=xephyr'],
  ['pactl', 'sets up the sound bridge'],
  ['xclip', 'moves the clipboard across'],
  ['podman', 'runs Backend=podman cages'],
  ['lxc', 'runs Backend=lxd cages'],
];
const SBIN = '/usr/local/sbin:/usr/sbin:/sbin';

function readTrim(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Does the system Python have these modules? (xpra, the seccomp compiler and the bridges use it) */
function pythonHas(modules: string[]): string[] {
  return modules.filter(
    (m) => spawnSync(SYSTEM_PYTHON, ['-I', '-c', `import ${m}`], { stdio: 'ignore' }).status !== 0,
  );
}

export function diagnose(env: Env, enterHelper: () => string): Finding[] {
  const out: Finding[] = [];
  const envPath = env.PATH ?? '/usr/bin:/bin';
  const program = (name: string, purpose: string, severity: 'missing' | 'warning') => {
    const found = findInPath(name, `${envPath}:${SBIN}`);
    const pkg = DEBIAN_PACKAGES[name] ?? name;
    out.push(
      found
        ? { severity: 'ok', what: `${name}, which ${purpose}: ${found}` }
        : {
            severity,
            what: `${name}, which ${purpose}, is not installed`,
            fix: `sudo apt-get install ${pkg}`,
          },
    );
  };
  for (const [p, why] of REQUIRED) program(p, why, 'missing');
  for (const [p, why] of OPTIONAL) program(p, why, 'warning');

  if (!fs.existsSync(SYSTEM_PYTHON))
    out.push({
      severity: 'missing',
      what: `${SYSTEM_PYTHON} is not installed`,
      fix: 'sudo apt-get install python3',
    });
  else {
    const lacking = pythonHas(['seccomp', 'Xlib']);
    const pkgs: Record<string, string> = { seccomp: 'python3-seccomp', Xlib: 'python3-xlib' };
    for (const m of lacking)
      out.push({
        severity: m === 'seccomp' ? 'missing' : 'warning',
        what: `the system Python lacks the module ${m}`,
        fix: `sudo apt-get install ${pkgs[m]}`,
      });
    // On some machines a pyenv shim shadows the system Python; xpra and kagome's helpers run
    // /usr/bin/python3 by its path, but programs in cages started as `python3` find the shim.
    const onPath = findInPath('python3', envPath);
    if (onPath && fs.realpathSync(onPath) !== fs.realpathSync(SYSTEM_PYTHON)) {
      out.push({
        severity: 'warning',
        what: `python3 on PATH is ${onPath}, not the system's ${SYSTEM_PYTHON}, whose modules xpra and the bridges need`,
        fix: `put /usr/bin before ${path.dirname(onPath)} on PATH for the service, or start it from the systemd unit (kagome setup)`,
      });
    }
  }

  // Unprivileged user namespaces: Debian's switch, the generic limit, and Ubuntu's AppArmor one.
  const clone = readTrim('/proc/sys/kernel/unprivileged_userns_clone');
  const max = readTrim('/proc/sys/user/max_user_namespaces');
  const apparmor = readTrim('/proc/sys/kernel/apparmor_restrict_unprivileged_userns');
  if (clone === '0')
    out.push({
      severity: 'missing',
      what: 'unprivileged user namespaces are switched off (kernel.unprivileged_userns_clone=0)',
      fix: 'sudo sysctl -w kernel.unprivileged_userns_clone=1, and set it in /etc/sysctl.d/',
    });
  else if (max === '0')
    out.push({
      severity: 'missing',
      what: 'user namespaces are limited to none (user.max_user_namespaces=0)',
      fix: 'sudo sysctl -w user.max_user_namespaces=15000, and set it in /etc/sysctl.d/',
    });
  else if (apparmor === '1')
    out.push({
      severity: 'missing',
      what: 'AppArmor refuses unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)',
      fix: 'give bwrap an AppArmor profile that allows userns, as Ubuntu does for its own packages',
    });
  else out.push({ severity: 'ok', what: 'unprivileged user namespaces are allowed' });

  try {
    out.push({ severity: 'ok', what: `kagome-enter: ${enterHelper()}` });
  } catch (e) {
    out.push({
      severity: 'missing',
      what: (e as Error).message,
      fix: 'npm run build (it needs gcc and libc6-dev)',
    });
  }

  const portal = [
    '/usr/libexec/xdg-document-portal',
    '/usr/lib/xdg-desktop-portal/xdg-document-portal',
  ].find((p) => fs.existsSync(p));
  out.push(
    portal
      ? { severity: 'ok', what: `document portal: ${portal}` }
      : {
          severity: 'warning',
          what: 'no document portal: files are given to cages as copies',
          fix: 'sudo apt-get install xdg-desktop-portal',
        },
  );

  const pulse =
    env.PULSE_SERVER ||
    (env.XDG_RUNTIME_DIR && fs.existsSync(path.join(env.XDG_RUNTIME_DIR, 'pulse', 'native'))
      ? 'pulse/native'
      : undefined);
  out.push(
    pulse
      ? { severity: 'ok', what: `sound server: ${pulse}` }
      : {
          severity: 'warning',
          what: 'no sound server found (no PULSE_SERVER, no $XDG_RUNTIME_DIR/pulse/native): cages play no sound',
          fix: 'run PulseAudio or PipeWire with pipewire-pulse',
        },
  );

  const limits = limitsSupport(env as NodeJS.ProcessEnv);
  out.push(
    limits.how === 'none'
      ? { severity: 'warning', what: `cage memory limits are not held: ${limits.why}` }
      : { severity: 'ok', what: `cage limits are held through a ${limits.how}` },
  );

  if (!env.DISPLAY)
    out.push({
      severity: 'warning',
      what: 'DISPLAY is not set: cage windows need the host X server (Wayland desktops: through Xwayland)',
    });
  if (
    !env.DBUS_SESSION_BUS_ADDRESS &&
    !(env.XDG_RUNTIME_DIR && fs.existsSync(path.join(env.XDG_RUNTIME_DIR, 'bus')))
  ) {
    out.push({
      severity: 'missing',
      what: 'no session bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus)',
      fix: 'run kagome in a desktop session, or under dbus-run-session',
    });
  }
  return out;
}
