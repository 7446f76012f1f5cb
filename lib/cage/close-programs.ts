import type { Backend, SandboxRecord } from '../backends/backend.js';
import { isAlive, signal, waitUntil, type ProcRef } from '../runtime/proc.js';

// Stopping a cage closes its programs the way a logout does, before their display goes away:
// first each window is asked to close (WM_DELETE_WINDOW, what the close button sends), then
// the programs still running get SIGTERM, and only what is left after that is killed with the
// cage. Killed outright, Firefox offered Troubleshoot Mode at its next start and LibreOffice
// its document recovery; and a program whose X server vanishes first dies of that, not of a
// signal it could handle.

/** How long programs have to close their windows: a browser saves its session in about a second. */
export const CLOSE_GRACE_MS = 8000;
/** Then, after SIGTERM. */
export const TERM_GRACE_MS = 4000;

/**
 * Runs in the cage, on the cage's display, with python3-xlib (the clipboard bridge's module):
 * sends WM_DELETE_WINDOW to every mapped top-level window that takes it (xpra keeps client
 * windows in a parent of its own, so the walk goes a few levels down and stops at a window it
 * has asked), then waits until those windows are gone. Exits 3 when there was no window to ask.
 */
export const CLOSE_WINDOWS_SCRIPT = [
  'import sys',
  'from Xlib import X, display, error',
  'from Xlib.protocol import event',
  'd = display.Display()',
  'PROTOCOLS, DELETE = d.intern_atom("WM_PROTOCOLS"), d.intern_atom("WM_DELETE_WINDOW")',
  'asked = set()',
  'def walk(w, depth):',
  '    try:',
  '        children = w.query_tree().children',
  '    except error.XError:',
  '        return',
  '    for c in children:',
  '        try:',
  '            attrs = c.get_attributes()',
  '            protocols = c.get_wm_protocols() or []',
  '            if attrs.map_state != X.IsUnmapped and not attrs.override_redirect and DELETE in protocols:',
  '                c.change_attributes(event_mask=X.StructureNotifyMask)',
  '                c.send_event(event.ClientMessage(window=c, client_type=PROTOCOLS, data=(32, [DELETE, X.CurrentTime, 0, 0, 0])))',
  '                asked.add(c.id)',
  '            elif depth < 3:',
  '                walk(c, depth + 1)',
  '        except error.XError:',
  '            continue',
  'walk(d.screen().root, 0)',
  'd.sync()',
  'print("kagome: asked %d window(s) to close" % len(asked), flush=True)',
  'if not asked:',
  '    sys.exit(3)',
  // Unmapped or destroyed: closed, as far as the person at the screen can tell.
  'while asked:',
  '    e = d.next_event()',
  '    if e.type in (X.DestroyNotify, X.UnmapNotify):',
  '        asked.discard(e.window.id)',
].join('\n');

export interface ClosingCage {
  backend: Backend;
  sandbox: SandboxRecord;
  /** the cage's environment, with its DISPLAY */
  env: Record<string, string>;
  logFd: number;
  /** the programs kagome started in it (the processes that carry them) */
  programs: ProcRef[];
}

/** After the windows are gone, how long their programs have to finish (write a session, a file). */
export const AFTER_CLOSE_MS = 3000;

/** Asks the cage's programs to end, and waits for them as long as a logout would. */
export async function closePrograms(
  cage: ClosingCage,
  grace = { close: CLOSE_GRACE_MS, term: TERM_GRACE_MS },
): Promise<'closed' | 'terminated' | 'left'> {
  const running = () => cage.programs.filter((p) => isAlive(p));
  if (running().length === 0) return 'closed';
  if (cage.env.DISPLAY) {
    let askedSome = false;
    try {
      const closer = await cage.backend.exec(cage.sandbox, {
        argv: ['python3', '-I', '-c', CLOSE_WINDOWS_SCRIPT],
        env: cage.env,
        cwd: '/',
        logFd: cage.logFd,
      });
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([
        closer.exited,
        new Promise<number>((r) => (timer = setTimeout(() => r(-1), grace.close))),
      ]);
      clearTimeout(timer);
      if (code === -1) {
        try {
          process.kill(closer.pid, 'SIGKILL'); // not yet reaped, so still ours
        } catch {
          /* gone */
        }
      }
      // 0: asked and gone; 3: nothing to ask; else the script failed (no display, no python3-xlib).
      askedSome = code === 0 || code === -1;
    } catch {
      /* no python3-xlib in an image: the programs still get SIGTERM below */
    }
    // Windows that closed belong to programs that are ending; the rest get SIGTERM at once.
    if (askedSome && (await waitUntil(() => running().length === 0, AFTER_CLOSE_MS, 50)))
      return 'closed';
  }
  // kagome-enter (or the engine's exec) passes SIGTERM on to the program it carries.
  for (const p of running()) signal(p, 'SIGTERM');
  if (await waitUntil(() => running().length === 0, grace.term, 50)) return 'terminated';
  return 'left';
}
