import { execFile } from 'node:child_process';
import { findInPath } from '../requirements.js';
import type { DisplayContext } from './display.js';

// What a cage's display copies from the host's, so that its programs draw at the host's size:
// the screen's size, the DPI the X server reports (from the screen's size in millimetres, what
// xdpyinfo, Xlib and LibreOffice's X11 backend read), Xft.dpi of the host's resources (what GTK
// and Qt read when no XSETTINGS manager runs, as in a cage) and the toolkits' scale variables.
// Without them an Xephyr cage drew at 75 dpi (Xephyr's default) and an xpra cage at 96: a
// LibreOffice page was a quarter smaller than on the host.

export interface HostScreen {
  /** WIDTHxHEIGHT of the host's default screen */
  size?: string;
  /** the DPI the host's X server reports for that screen */
  dpi?: number;
  /** Xft.dpi of the host's RESOURCE_MANAGER, when it has one */
  xftDpi?: string;
  /** the toolkits' scale variables the host's environment sets */
  scaleEnv: Record<string, string>;
}

/**
 * Scale factors only: none of them names a host monitor (QT_SCREEN_SCALE_FACTORS does, by the
 * host's output names, which the cage's screen does not have).
 */
export const SCALE_VARIABLES = [
  'GDK_SCALE',
  'GDK_DPI_SCALE',
  'QT_SCALE_FACTOR',
  'QT_AUTO_SCREEN_SCALE_FACTOR',
  'QT_ENABLE_HIGHDPI_SCALING',
] as const;

/** Used when the host's cannot be read (no xdpyinfo, no display): what Xorg itself assumes. */
export const FALLBACK_DPI = 96;

function run(
  program: string,
  args: string[],
  env: Record<string, string>,
): Promise<string | undefined> {
  const found = findInPath(program, env.PATH);
  if (!found) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    execFile(found, args, { env, timeout: 5000, maxBuffer: 4 << 20 }, (err, stdout) =>
      resolve(err ? undefined : stdout),
    );
  });
}

/** xdpyinfo's size and resolution of the default screen. */
export function parseXdpyinfo(text: string): { size?: string; dpi?: number } {
  const def = /^default screen number:\s+(\d+)/m.exec(text)?.[1] ?? '0';
  const section = text.split(/^screen #/m).find((s) => s.startsWith(`${def}:`)) ?? '';
  const dims = /dimensions:\s+(\d+)x(\d+) pixels/.exec(section);
  const res = /resolution:\s+(\d+)x(\d+) dots per inch/.exec(section);
  const dpi = res ? Math.round((Number(res[1]) + Number(res[2])) / 2) : undefined;
  return {
    ...(dims ? { size: `${dims[1]}x${dims[2]}` } : {}),
    ...(dpi && dpi >= 10 && dpi <= 1000 ? { dpi } : {}),
  };
}

/** Xft.dpi out of `xprop -root RESOURCE_MANAGER`, which prints the resources as one quoted string. */
export function parseXftDpi(text: string): string | undefined {
  const m = /(?:"|\\n)Xft\.dpi:(?:\\t|\s)*([0-9]+(?:\.[0-9]+)?)/.exec(text);
  if (!m) return undefined;
  const v = Number(m[1]);
  return v >= 10 && v <= 1000 ? m[1] : undefined;
}

export function scaleEnvOf(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of SCALE_VARIABLES) {
    const v = env[k];
    // A number, or Qt's 0/1 switches: nothing else is a scale, and nothing else is passed on.
    if (v !== undefined && /^[0-9]+(\.[0-9]+)?$/.test(v)) out[k] = v;
  }
  return out;
}

/** The host's scale variables (kept in the display's record), unless the cage file sets its own. */
export function scaleEnvFor(
  ctx: DisplayContext,
  scaleEnv: Record<string, string> | undefined,
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(scaleEnv ?? {}).filter(([k]) => ctx.spec.env[k] === undefined),
  );
}

/** Reads the host display's facts through x11-utils (xdpyinfo, xprop): about 10 ms each, at once. */
export async function readHostScreen(env: Record<string, string>): Promise<HostScreen> {
  const [info, resources] = await Promise.all([
    run('xdpyinfo', [], env),
    run('xprop', ['-root', 'RESOURCE_MANAGER'], env),
  ]);
  const xftDpi = resources === undefined ? undefined : parseXftDpi(resources);
  return {
    ...(info === undefined ? {} : parseXdpyinfo(info)),
    ...(xftDpi ? { xftDpi } : {}),
    scaleEnv: scaleEnvOf(env),
  };
}

/**
 * Runs on the cage's display (python3-xlib, the clipboard bridge's module): sets Xft.dpi in its
 * resources when argv[1] is not empty, keeping any other resource; then, when argv[2] is a
 * number of seconds, says "resources" and waits that long at most for a window manager to own
 * WM_S0 (exit 4 if none did).
 */
export const DISPLAY_SETTINGS_SCRIPT = [
  'import sys, time',
  'from Xlib import X, Xatom, display',
  'dpi, wait_wm = sys.argv[1], float(sys.argv[2] or 0)',
  'd = display.Display()',
  'root = d.screen().root',
  'if dpi:',
  '    old = root.get_full_property(Xatom.RESOURCE_MANAGER, Xatom.STRING)',
  '    text = old.value if old else b""',
  '    text = text.decode("latin1") if isinstance(text, bytes) else text',
  '    lines = [l for l in text.split("\\n") if l and not l.startswith("Xft.dpi:")]',
  '    root.change_property(Xatom.RESOURCE_MANAGER, Xatom.STRING, 8, ("\\n".join(lines + ["Xft.dpi:\\t" + dpi]) + "\\n").encode("latin1"))',
  '    d.sync()',
  'if wait_wm > 0:',
  '    print("resources", flush=True)',
  '    wm, deadline = d.intern_atom("WM_S0"), time.monotonic() + wait_wm',
  '    while d.get_selection_owner(wm) == X.NONE:',
  '        if time.monotonic() > deadline:',
  '            sys.exit(4)',
  '        time.sleep(0.01)',
].join('\n');
