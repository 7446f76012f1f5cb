import os from 'node:os';
import { FileError } from '../errors.js';
import { Keyfile } from '../../xdg/keyfile.js';
import { CAGE_NAME_PATTERN, checkCageName } from './name.js';
import { checkNameFormat, DEFAULT_NAME_FORMAT } from '../desktop/shadow.js';

// The cage file: `$XDG_CONFIG_HOME/kagome/cages/NAME.cage`, keyfile syntax (the same parser as
// desktop entries), one `[Cage]` group. Every key is checked here, with the file, line and key
// in the message and the allowed values spelled out, because this file is edited by hand.
//
//   [Cage]
//   Backend=bubblewrap          # bubblewrap (host's /usr) | podman | docker | lxd (an image's root)
//   Image=kagome/debian12       # container backends: the image (see `kagome image build`)
//   Remote=                     # lxd: an LXD remote from `lxc remote list` (default: the local one)
//   Display=xpra                # xpra (seamless windows) | xephyr (one nested window)
//   Network=none                # none | full | internet (bubblewrap only), see below
//   Home=~/.local/share/kagome/homes/NAME   # persistent private home (default shown)
//   ReadOnly=/srv/photos;/opt/tools:/tools; # host paths, optionally HOST:IN_CAGE
//   ReadWrite=~/Projects/site:~/site;
//   Environment=LANG=C.UTF-8;EDITOR=vi;
//   IdleStop=60                 # seconds after the last program exits; 0 = keep running
//   Border=#3465a4              # window border colour on the host; none = no border
//   Description=Browsing
//   AppName={name} [{cage}]     # how this cage's apps are named in menus and docks
//   Sound=output                # none | output (play only) | duplex (play and record)
//   Clipboard=ask               # none | to-cage | to-host | both | ask (explicit copies only)
//   ClipboardPrimary=false      # also bridge the PRIMARY selection (mouse selection)
//   ClipboardMaxSize=256K       # larger contents are not transferred (bytes, K or M)
//   ClipboardImages=false       # true: images too, not only text
//   NestedSandbox=true          # may programs build their own sandboxes (browsers do)
//   TasksMax=4096               # processes and threads at once; infinity = no limit
//   MemoryMax=50%               # memory (bytes with K, M, G or T, or % of the machine's); infinity
//   SessionBus=private          # private: a D-Bus session bus of the cage's own | portal: that bus
//                               # with the host's file chooser portal on it | none: no bus
//   OpenLinks=caged-default     # where links opened in the cage go (SessionBus=portal):
//                               # caged-default | host | cage:NAME | ask | ask-with-host | none
//   OpenLinksLimit=5            # links at once, then one each 5 s; none = no limit
//   Notifications=portal        # portal: notifications, marked with the cage (SessionBus=portal) | none
//   TrayIcons=true              # programs' tray icons (XEmbed) in the host's tray (Display=xpra)
//   OnLogout=stop               # stop: programs closed at logout | keep: shown again at the next login

export const CAGE_GROUP = 'Cage';
export const BACKENDS = ['bubblewrap', 'podman', 'docker', 'lxd'] as const;
/** The image container cages run when the cage file names none: what `kagome image build` makes. */
export const DEFAULT_IMAGE = 'kagome/debian12';
export const DISPLAYS = ['xpra', 'xephyr'] as const;
/**
 * none: loopback only. full: the cage's own network namespace through slirp4netns (never the
 * host's namespace), reaching everything the host reaches, including the host's own addresses
 * and its LAN; only the host's 127.0.0.1 stays out. internet: the same, but nftables rules in
 * that namespace refuse the host's addresses, loopback, the private, link-local, CGNAT and
 * multicast ranges and slirp4netns's gateway, leaving its DNS forwarder and the rest of the
 * internet (net-policy.ts). bubblewrap cages only: a container engine's network namespace is
 * the engine's to filter.
 */
export const NETWORKS = ['none', 'full', 'internet'] as const;
export const SOUND_POLICIES = ['none', 'output', 'duplex'] as const;
export const CLIPBOARD_POLICIES = ['none', 'to-cage', 'to-host', 'both', 'ask'] as const;
/**
 * private: a dbus-daemon of the cage's own runs inside it (lib/bridges/session-bus.ts), so its
 * programs find each other (single instance, dconf) and never the host's bus or another
 * cage's. portal: the same bus, with the host's xdg-desktop-portal FileChooser on it through a
 * filtering proxy that names the cage to the portal (lib/bridges/portal-proxy.ts): Open and Save
 * dialogs are the host's, and only the file picked there reaches the cage. Not the default: it
 * is a way across the wall that private is not, it needs xdg-dbus-proxy and the host's portal
 * with a backend, and it makes GTK programs show the host's files in their dialogs, not the
 * cage's home. none: no session bus at all, as before.
 */
export const SESSION_BUS_POLICIES = ['private', 'portal', 'none'] as const;
/**
 * What a logout (the host display gone) does to a running cage. stop: its programs are closed
 * as the logout closes the host's (close-programs.ts) and the cage stops. keep: the cage and its
 * programs go on, unseen, and the next login's display shows their windows again (xpra cages;
 * a Xephyr cage's display is a window on the host's, so it ends with it and is always stopped).
 */
export const LOGOUT_POLICIES = ['stop', 'keep'] as const;
/**
 * Where a link the cage's programs open through the OpenURI portal goes (lib/links.ts).
 * caged-default: to the host's default program for its scheme only when that is a kagome
 * shadow entry, i.e. into the cage the person put their browser in; refused otherwise, so a
 * hostile cage never reaches an uncaged browser unless the person said so. host: the host's
 * default program, caged or not. cage:NAME: that cage's own default program. ask: the person
 * is asked on the host, each time, which cage with a browser opens it (or none);
 * ask-with-host: the same, with the host's own default program among the choices. none: refused.
 */
export const LINK_POLICIES = ['caged-default', 'host', 'ask', 'ask-with-host', 'none'] as const;
/** OpenLinksLimit= when the cage file says nothing: a burst of this many links (lib/links.ts). */
export const DEFAULT_LINKS_LIMIT = 5;
/**
 * portal: a SessionBus=portal cage's programs may send notifications through the Notification
 * portal on their bus; kagome shows them on the host as plain text marked with the cage's name
 * (lib/cage-notifications.ts). none: the cage's proxy refuses them. Read when the cage starts
 * (the proxy's filter).
 */
export const NOTIFICATION_POLICIES = ['portal', 'none'] as const;
export type NotificationPolicy = (typeof NOTIFICATION_POLICIES)[number];
export type OpenLinksPolicy = (typeof LINK_POLICIES)[number] | `cage:${string}`;

export type BackendKind = (typeof BACKENDS)[number];
export type DisplayKind = (typeof DISPLAYS)[number];
export type NetworkMode = (typeof NETWORKS)[number];
export type SoundPolicy = (typeof SOUND_POLICIES)[number];
export type ClipboardDirection = (typeof CLIPBOARD_POLICIES)[number];
export type SessionBusPolicy = (typeof SESSION_BUS_POLICIES)[number];
export type LogoutPolicy = (typeof LOGOUT_POLICIES)[number];

export interface ClipboardPolicy {
  direction: ClipboardDirection;
  /** the PRIMARY selection (select to copy, middle-click to paste) crosses too */
  primary: boolean;
  /** contents larger than this many bytes never cross */
  maxBytes: number;
  /** images cross too; otherwise text only */
  images: boolean;
}

/** Qubes' limit for one inter-VM copy; enough for any text a person copies by hand. */
export const DEFAULT_CLIPBOARD_MAX_BYTES = 256 * 1024;

export interface BindMount {
  source: string;
  dest: string;
  writable: boolean;
}

export interface CageConfig {
  name: string;
  description: string;
  backend: BackendKind;
  /** container backends: the image the cage runs (undefined for bubblewrap) */
  image: string | undefined;
  /** lxd: the LXD remote, undefined for the local daemon */
  remote: string | undefined;
  display: DisplayKind;
  network: NetworkMode;
  /** absolute host path of the persistent private home */
  home: string;
  mounts: BindMount[];
  environment: Record<string, string>;
  /** seconds; 0 means the cage keeps running until stopped */
  idleStopSeconds: number;
  /** a colour xpra understands (#rrggbb or an X11 name), or undefined for no border */
  border: string | undefined;
  /** the menu name of the cage's apps: {name} is the program's own name, {cage} the cage's */
  appName: string;
  sound: SoundPolicy;
  clipboard: ClipboardPolicy;
  /**
   * may programs make user namespaces of their own (bubblewrap cages)? Firefox and Chromium
   * build their own sandboxes from them; everything else the seccomp filter blocks anyway
   */
  nestedSandbox: boolean;
  /** at most this many processes and threads at once; 0 for no limit */
  tasksMax: number;
  /** at most this much memory, in bytes; 0 for no limit */
  memoryMax: number;
  /** the cage's own D-Bus session bus, or none */
  sessionBus: SessionBusPolicy;
  /** stopped or kept when the desktop session ends */
  onLogout: LogoutPolicy;
  /**
   * xpra cages: programs' XEmbed tray icons shown in the host's tray, marked with the cage's
   * name (lib/display/xpra.ts); false: the cage's X server has no tray, as before
   */
  trayIcons: boolean;
  /** where links opened in the cage through the portal go */
  openLinks: OpenLinksPolicy;
  /** links the cage may open at once before they are refused (refilled over time); 0: no limit */
  openLinksLimit: number;
  /** may the cage's programs notify through the host's portal */
  notifications: NotificationPolicy;
}

export interface ConfigContext {
  hostHome: string;
  homesDir: string;
  /** the machine's memory in bytes, for MemoryMax=N% (default: this machine's) */
  totalMemory?: number;
}

const KNOWN_KEYS = new Set([
  'Backend',
  'Image',
  'Remote',
  'Display',
  'Network',
  'Home',
  'ReadOnly',
  'ReadWrite',
  'Environment',
  'IdleStop',
  'Border',
  'Description',
  'AppName',
  'Sound',
  'Clipboard',
  'ClipboardPrimary',
  'ClipboardMaxSize',
  'ClipboardImages',
  'NestedSandbox',
  'TasksMax',
  'MemoryMax',
  'SessionBus',
  'OnLogout',
  'OpenLinks',
  'OpenLinksLimit',
  'Notifications',
  'TrayIcons',
]);

const DEFAULT_IDLE_STOP = 0;
export const DEFAULT_TASKS_MAX = 4096;
/**
 * Half the machine's memory: a runaway program is stopped by the kernel in its own cage while
 * the desktop and other cages still have the other half; a browser with many tabs fits.
 */
export const DEFAULT_MEMORY_MAX = '50%';
const MIN_MEMORY_MAX = 64 * 1024 * 1024;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// OCI references and LXD aliases: no spaces, no leading '-' (never read as an engine option).
const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._\/:@+-]{0,254}$/;
const REMOTE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const COLOUR = /^(#[0-9A-Fa-f]{6}|#[0-9A-Fa-f]{3}|[A-Za-z][A-Za-z0-9 ]{0,30})$/;
// A cage must not be able to re-point the variables kagome itself sets to wire the cage up.
const RESERVED_ENV = new Set([
  'DISPLAY',
  'XAUTHORITY',
  'HOME',
  'XDG_RUNTIME_DIR',
  'DBUS_SESSION_BUS_ADDRESS',
  'WAYLAND_DISPLAY',
  'PULSE_SERVER',
  'PULSE_CLIENTCONFIG',
]);

/** Distinct, stable default colours so two cages are told apart without any configuration. */
export function defaultBorder(name: string): string {
  let h = 2166136261;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  const hue = h % 360;
  return hslToHex(hue, 0.65, 0.45);
}

function hslToHex(h: number, s: number, l: number): string {
  const k = (n: number) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  const hex = (x: number) =>
    Math.round(x * 255)
      .toString(16)
      .padStart(2, '0');
  return `#${hex(f(0))}${hex(f(8))}${hex(f(4))}`;
}

export function expandHome(p: string, hostHome: string): string {
  if (p === '~') return hostHome;
  if (p.startsWith('~/')) return hostHome + p.slice(1);
  return p;
}

export function parseCageFile(
  text: string | Uint8Array,
  file: string,
  name: string,
  ctx: ConfigContext,
): CageConfig {
  checkCageName(name);
  const kf = Keyfile.parse(text, { file, errorName: 'InvalidCageFile' });
  const fail = (key: string | undefined, reason: string): never => {
    const line = key === undefined ? undefined : kf.lineOf(CAGE_GROUP, key);
    throw new FileError('InvalidCageFile', { file, line, key }, reason);
  };
  if (!kf.hasGroup(CAGE_GROUP))
    fail(undefined, `no [${CAGE_GROUP}] group: a cage file starts with a line [${CAGE_GROUP}]`);
  for (const group of kf.groups()) {
    if (group !== CAGE_GROUP) {
      throw new FileError(
        'InvalidCageFile',
        { file },
        `unknown group [${group}]: a cage file has only a [${CAGE_GROUP}] group`,
      );
    }
  }
  for (const { key, locale, line } of kf.keys(CAGE_GROUP)) {
    if (locale !== undefined) {
      throw new FileError(
        'InvalidCageFile',
        { file, line, key: `${key}[${locale}]` },
        'cage keys are not localized; remove the [locale] suffix',
      );
    }
    if (!KNOWN_KEYS.has(key) && !key.startsWith('X-')) {
      throw new FileError(
        'InvalidCageFile',
        { file, line, key },
        `unknown key; allowed keys are ${[...KNOWN_KEYS].join(', ')} and X-* extensions`,
      );
    }
  }

  const oneOf = <T extends string>(key: string, allowed: readonly T[], fallback: T): T => {
    const v = kf.get(CAGE_GROUP, key);
    if (v === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(v))
      fail(key, `${JSON.stringify(v)} is not allowed; use one of: ${allowed.join(', ')}`);
    return v as T;
  };
  const absolute = (key: string, p: string): string => {
    const expanded = expandHome(p, ctx.hostHome);
    if (!expanded.startsWith('/'))
      fail(key, `${JSON.stringify(p)} is not an absolute path; write /path or ~/path`);
    if (expanded.split('/').includes('..'))
      fail(key, `${JSON.stringify(p)} contains '..'; write the path without it`);
    return expanded.replace(/\/+$/, '') || '/';
  };

  const backend = oneOf('Backend', BACKENDS, 'bubblewrap');
  const display = oneOf('Display', DISPLAYS, 'xpra');
  const imageRaw = kf.get(CAGE_GROUP, 'Image');
  let image: string | undefined;
  if (backend === 'bubblewrap') {
    if (imageRaw !== undefined)
      fail(
        'Image',
        "bubblewrap cages run the host's own /usr and take no image; set Backend=podman, docker or lxd to run an image",
      );
  } else {
    image = imageRaw === undefined || imageRaw === '' ? DEFAULT_IMAGE : imageRaw;
    if (!IMAGE_NAME.test(image))
      fail(
        'Image',
        `${JSON.stringify(image)} is not an image name; write one like kagome/debian12 or registry.example.org/team/image:tag`,
      );
  }
  const remoteRaw = kf.get(CAGE_GROUP, 'Remote');
  let remote: string | undefined;
  if (remoteRaw !== undefined && remoteRaw !== '') {
    if (backend !== 'lxd')
      fail(
        'Remote',
        'only LXD cages can run on another machine; remove Remote= or set Backend=lxd',
      );
    if (!REMOTE_NAME.test(remoteRaw))
      fail(
        'Remote',
        `${JSON.stringify(remoteRaw)} is not an LXD remote name; use a name from 'lxc remote list'`,
      );
    remote = remoteRaw;
  }
  const network = oneOf('Network', NETWORKS, 'none');
  if (network === 'internet' && backend !== 'bubblewrap') {
    fail(
      'Network',
      `"internet" is for bubblewrap cages only (its rules go in the cage's own network namespace, which a ${backend} cage's engine owns); set Backend=bubblewrap, or Network=full if the cage may also reach this machine's addresses and LAN`,
    );
  }

  const sessionBus = oneOf('SessionBus', SESSION_BUS_POLICIES, 'private');
  if (sessionBus === 'portal' && backend !== 'bubblewrap') {
    fail(
      'SessionBus',
      `"portal" is for bubblewrap cages only for now (the file a portal dialog picks comes back in the document portal's folder, which a ${backend} cage does not see at that path); set SessionBus=private`,
    );
  }

  const linksRaw = kf.get(CAGE_GROUP, 'OpenLinks');
  let openLinks: OpenLinksPolicy = 'caged-default';
  if (linksRaw !== undefined) {
    if (linksRaw.startsWith('cage:') && CAGE_NAME_PATTERN.test(linksRaw.slice(5)))
      openLinks = linksRaw as OpenLinksPolicy;
    else if ((LINK_POLICIES as readonly string[]).includes(linksRaw))
      openLinks = linksRaw as OpenLinksPolicy;
    else
      fail(
        'OpenLinks',
        `${JSON.stringify(linksRaw)} is not allowed; use one of: ${LINK_POLICIES.join(', ')}, or cage:NAME`,
      );
  }

  const linksLimitRaw = kf.get(CAGE_GROUP, 'OpenLinksLimit');
  let openLinksLimit = DEFAULT_LINKS_LIMIT;
  if (linksLimitRaw !== undefined) {
    if (linksLimitRaw === 'none') openLinksLimit = 0;
    else if (/^[1-9]\d{0,3}$/.test(linksLimitRaw)) openLinksLimit = Number(linksLimitRaw);
    else
      fail(
        'OpenLinksLimit',
        `${JSON.stringify(linksLimitRaw)} is not a number of links; write a whole number from 1 to 9999, or none (no limit)`,
      );
  }

  const homeRaw = kf.get(CAGE_GROUP, 'Home');
  const home =
    homeRaw === undefined || homeRaw === '' ? `${ctx.homesDir}/${name}` : absolute('Home', homeRaw);
  if (home === ctx.hostHome)
    fail(
      'Home',
      'the cage home cannot be your own home directory: that would show all of it to the cage; use a ReadWrite= entry for the folders it should see',
    );

  const mounts: BindMount[] = [];
  for (const [key, writable] of [
    ['ReadOnly', false],
    ['ReadWrite', true],
  ] as const) {
    for (const item of kf.getList(CAGE_GROUP, key) ?? []) {
      if (item === '') continue;
      const parts = item.split(':');
      if (parts.length > 2)
        fail(
          key,
          `${JSON.stringify(item)}: write HOST_PATH or HOST_PATH:CAGE_PATH (paths with ':' are not supported)`,
        );
      const source = absolute(key, parts[0] ?? '');
      const dest = parts.length === 2 ? absolute(key, parts[1] ?? '') : source;
      if (source === '/' || dest === '/')
        fail(
          key,
          `${JSON.stringify(item)}: the root directory cannot be bound; name the folders to share`,
        );
      mounts.push({ source, dest, writable });
    }
  }
  const problem = writableAncestorProblem(mounts, home);
  if (problem) fail(problem.mount.writable ? 'ReadWrite' : 'ReadOnly', problem.reason);

  const environment: Record<string, string> = {};
  for (const item of kf.getList(CAGE_GROUP, 'Environment') ?? []) {
    if (item === '') continue;
    const eq = item.indexOf('=');
    const envName = eq < 0 ? item : item.slice(0, eq);
    if (eq < 0 || !ENV_NAME.test(envName))
      fail(
        'Environment',
        `${JSON.stringify(item)}: write NAME=VALUE with NAME made of A-Z, a-z, 0-9 and '_'`,
      );
    if (RESERVED_ENV.has(envName))
      fail(
        'Environment',
        `${envName} is set by kagome to wire the cage up and cannot be overridden`,
      );
    environment[envName] = item.slice(eq + 1);
  }

  let idleStopSeconds = DEFAULT_IDLE_STOP;
  const idle = kf.get(CAGE_GROUP, 'IdleStop');
  if (idle !== undefined) {
    if (!/^\d{1,7}$/.test(idle))
      fail(
        'IdleStop',
        `${JSON.stringify(idle)} is not a number of seconds; write 0 (never stop) or a whole number like 60`,
      );
    idleStopSeconds = Number(idle);
  }

  let border: string | undefined = defaultBorder(name);
  const borderRaw = kf.get(CAGE_GROUP, 'Border');
  if (borderRaw !== undefined) {
    if (borderRaw === 'none') border = undefined;
    else if (!COLOUR.test(borderRaw))
      fail(
        'Border',
        `${JSON.stringify(borderRaw)} is not a colour; write #rrggbb, an X11 colour name like 'red', or none`,
      );
    else border = borderRaw;
  }

  // A fork bomb in a cage must not take the desktop down. 4096 leaves a browser (hundreds of
  // threads) plenty of room; "infinity" lifts the limit.
  let tasksMax = DEFAULT_TASKS_MAX;
  const tasksRaw = kf.get(CAGE_GROUP, 'TasksMax');
  if (tasksRaw !== undefined) {
    if (tasksRaw === 'infinity') tasksMax = 0;
    else if (/^\d{1,7}$/.test(tasksRaw) && Number(tasksRaw) >= 16) tasksMax = Number(tasksRaw);
    else
      fail(
        'TasksMax',
        `${JSON.stringify(tasksRaw)} is not a number of tasks; write a whole number of at least 16 (default ${DEFAULT_TASKS_MAX}) or infinity`,
      );
  }

  const memoryRaw = kf.get(CAGE_GROUP, 'MemoryMax') ?? DEFAULT_MEMORY_MAX;
  const memoryMax =
    parseMemoryMax(memoryRaw, ctx.totalMemory ?? os.totalmem()) ??
    fail(
      'MemoryMax',
      `${JSON.stringify(memoryRaw)} is not an amount of memory; write bytes with an optional K, M, G or T (at least 64M), a percentage of this machine's memory such as 50% (the default), or infinity`,
    );

  const appName = kf.get(CAGE_GROUP, 'AppName') || DEFAULT_NAME_FORMAT;
  const appNameProblem = checkNameFormat(appName);
  if (appNameProblem) fail('AppName', `${JSON.stringify(appName)}: ${appNameProblem}`);

  const bool = (key: string, fallback: boolean): boolean => {
    const v = kf.get(CAGE_GROUP, key);
    if (v === undefined) return fallback;
    if (v !== 'true' && v !== 'false')
      fail(key, `${JSON.stringify(v)} is not a boolean; write true or false`);
    return v === 'true';
  };
  const sizeRaw = kf.get(CAGE_GROUP, 'ClipboardMaxSize');
  let maxBytes = DEFAULT_CLIPBOARD_MAX_BYTES;
  if (sizeRaw !== undefined) {
    const parsed = parseSize(sizeRaw);
    if (parsed === undefined)
      fail(
        'ClipboardMaxSize',
        `${JSON.stringify(sizeRaw)} is not a size; write a number of bytes, or one with K or M (like 256K), between 1 and 64M`,
      );
    maxBytes = parsed!;
  }
  const clipboard: ClipboardPolicy = {
    direction: oneOf('Clipboard', CLIPBOARD_POLICIES, 'ask'),
    primary: bool('ClipboardPrimary', false),
    maxBytes,
    images: bool('ClipboardImages', false),
  };

  return {
    name,
    description: kf.get(CAGE_GROUP, 'Description') ?? '',
    backend,
    image,
    remote,
    display,
    network,
    home,
    mounts,
    environment,
    idleStopSeconds,
    border,
    appName,
    sound: oneOf('Sound', SOUND_POLICIES, 'output'),
    clipboard,
    nestedSandbox: bool('NestedSandbox', true),
    trayIcons: bool('TrayIcons', true),
    tasksMax,
    memoryMax,
    sessionBus,
    onLogout: oneOf('OnLogout', LOGOUT_POLICIES, 'stop'),
    openLinks,
    openLinksLimit,
    notifications: oneOf('Notifications', NOTIFICATION_POLICIES, 'portal'),
  };
}

/**
 * A folder bound at each start must not lie where the cage can write: it could replace it (or
 * a folder on its way) with a link to anything of yours before the next start, and the start
 * would bind that instead (flatpak's CVE-2024-42472). So nothing is bound from inside the
 * cage's home or another folder it may write. Checked on the cage file's paths when it is
 * read, and on their real paths (links of yours resolved) at every start.
 */
export function writableAncestorProblem(
  mounts: readonly BindMount[],
  home: string,
): { mount: BindMount; reason: string } | undefined {
  const within = (inner: string, outer: string) =>
    inner === outer || inner.startsWith(outer.endsWith('/') ? outer : outer + '/');
  for (const m of mounts) {
    if (within(m.source, home) || (m.writable && within(home, m.source))) {
      return {
        mount: m,
        reason: `${m.source} and the cage's home ${home} lie one inside the other; the cage can change its home, so bind a folder outside it`,
      };
    }
    const outer = mounts.find(
      (w) =>
        w !== m &&
        w.writable &&
        within(m.source, w.source) &&
        !(m.writable && w.source === m.source),
    );
    if (outer)
      return {
        mount: m,
        reason: `${m.source} lies inside ${outer.source}, which the cage may write: it could put a link there before the next start; bind only ${outer.source}, or a folder outside it`,
      };
  }
  return undefined;
}

const MAX_CLIPBOARD_BYTES = 64 * 1024 * 1024;

/** "4096", "256K", "1M" (binary multiples) → bytes; undefined when not a size in range. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d{1,9})([KM]?)$/i.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * (m[2]?.toUpperCase() === 'M' ? 1024 * 1024 : m[2] ? 1024 : 1);
  return n >= 1 && n <= MAX_CLIPBOARD_BYTES ? n : undefined;
}

/** MemoryMax= in bytes (0 for infinity), or undefined when it is not a valid amount. */
export function parseMemoryMax(text: string, total: number): number | undefined {
  const t = text.trim();
  if (t === 'infinity') return 0;
  const pct = /^(\d{1,3})%$/.exec(t);
  if (pct) {
    const p = Number(pct[1]);
    if (p < 1 || p > 100) return undefined;
    return Math.max(MIN_MEMORY_MAX, Math.floor((total * p) / 100 / 4096) * 4096);
  }
  const m = /^(\d{1,15})([KMGT]?)$/i.exec(t);
  if (!m) return undefined;
  const n = Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
  return n >= MIN_MEMORY_MAX && Number.isSafeInteger(n) ? n : undefined;
}

export interface CageFileOptions {
  backend?: BackendKind;
  image?: string;
  remote?: string;
  display?: DisplayKind;
  network?: NetworkMode;
  home?: string;
  readOnly?: string[];
  readWrite?: string[];
  environment?: string[];
  idleStop?: number;
  border?: string;
  description?: string;
  sound?: SoundPolicy;
  clipboard?: ClipboardDirection;
}

/** A new cage file with only the keys the user chose, so defaults can improve later. */
export function formatCageFile(opts: CageFileOptions): string {
  const kf = Keyfile.create();
  kf.addGroup(CAGE_GROUP);
  const set = (k: string, v: string | undefined) => {
    if (v !== undefined) kf.set(CAGE_GROUP, k, v);
  };
  set('Description', opts.description);
  set('Backend', opts.backend ?? 'bubblewrap');
  set('Image', opts.image);
  set('Remote', opts.remote);
  set('Display', opts.display ?? 'xpra');
  set('Network', opts.network ?? 'none');
  set('Home', opts.home);
  if (opts.readOnly?.length) kf.setList(CAGE_GROUP, 'ReadOnly', opts.readOnly);
  if (opts.readWrite?.length) kf.setList(CAGE_GROUP, 'ReadWrite', opts.readWrite);
  if (opts.environment?.length) kf.setList(CAGE_GROUP, 'Environment', opts.environment);
  set('IdleStop', opts.idleStop === undefined ? undefined : String(opts.idleStop));
  set('Border', opts.border);
  set('Sound', opts.sound);
  set('Clipboard', opts.clipboard);
  return kf.toString();
}
