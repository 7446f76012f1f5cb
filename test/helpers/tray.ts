import { execa } from 'execa';
import { spawnDaemon, stopChild, tail, track, unrefDaemon } from './daemons.js';
import { waitFor } from './wait.js';

// A host's system tray on a test display: trayer (Debian package trayer), a panel holding
// XEmbed tray icons (the freedesktop system tray protocol: it owns _NET_SYSTEM_TRAY_S0 and
// takes in the icons that ask to dock), and what is docked in it, read through python3-xlib.

/** An icon docked in a tray: a window with _XEMBED_INFO below a top-level window. */
export interface DockedIcon {
  id: number;
  name: string;
  mapped: boolean;
  /** on the root window */
  x: number;
  y: number;
  w: number;
  h: number;
}

const READ_TRAY = String.raw`
import json, sys
from Xlib import X, display
d = display.Display(sys.argv[1])
root = d.screen().root
XEMBED, NAME, UTF8 = (d.intern_atom(a) for a in ('_XEMBED_INFO', '_NET_WM_NAME', 'UTF8_STRING'))
icons = []
def walk(w, depth):
    try:
        children = w.query_tree().children
    except Exception:
        return
    for c in children:
        try:
            if depth > 0 and c.get_full_property(XEMBED, X.AnyPropertyType) is not None:
                n = c.get_full_property(NAME, UTF8)
                name = n.value.decode('utf-8', 'replace') if n else (c.get_wm_name() or '')
                g = c.get_geometry()
                t = root.translate_coords(c, 0, 0)
                icons.append({'id': c.id, 'name': name, 'mapped': c.get_attributes().map_state == X.IsViewable,
                              'x': t.x, 'y': t.y, 'w': g.width, 'h': g.height})
        except Exception:
            continue
        walk(c, depth + 1)
walk(root, 0)
owner = d.get_selection_owner(d.intern_atom('_NET_SYSTEM_TRAY_S0'))
print(json.dumps({'owner': owner if isinstance(owner, int) else owner.id, 'icons': icons}))
`;

/** Who owns the tray selection (0: nobody) and the icons docked on `display`. */
export async function readTray(display: string): Promise<{ owner: number; icons: DockedIcon[] }> {
  const r = await execa('/usr/bin/python3', ['-c', READ_TRAY, display]);
  return JSON.parse(r.stdout) as { owner: number; icons: DockedIcon[] };
}

/** trayer on `display`, once it owns the tray. */
export async function startTray(
  env: Record<string, string>,
): Promise<{ log(): string; stop(): Promise<void> }> {
  const child = await spawnDaemon(
    'trayer',
    ['--edge', 'top', '--align', 'right', '--widthtype', 'request', '--height', '32'],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
    'trayer',
  );
  track(child);
  const log = tail(child.stderr);
  try {
    await waitFor(
      'trayer owns the system tray',
      async () => child.exitCode === null && (await readTray(env.DISPLAY!)).owner !== 0,
      { timeoutMs: 20_000, pollMs: 100, detail: log },
    );
  } catch (e) {
    await stopChild(child);
    throw e;
  }
  unrefDaemon(child);
  return { log, stop: () => stopChild(child) };
}
