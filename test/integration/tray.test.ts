import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { execa } from 'execa';
import { World } from '../helpers/kagome.js';
import { readTray, startTray, type DockedIcon } from '../helpers/tray.js';
import { waitFor } from '../helpers/wait.js';

// Tray icons from cages (TrayIcons=, xpra cages), as the ordinary user: a host tray (trayer) on
// the test's display, a GTK 3 program with a Gtk.StatusIcon in a cage. Its icon docks in the
// host's tray, named (title and tooltip) "[CAGE] ..." and framed in the cage's colour, and a click on it there
// reaches the program. The control: a cage with TrayIcons=false, its program started first,
// docks nothing.

// Writes $HOME/NAME when started, when its icon is embedded in a tray, and when it is clicked.
const STATUS_ICON = String.raw`
import os, gi
gi.require_version('Gtk', '3.0')
from gi.repository import Gtk, GdkPixbuf
home = os.environ['HOME']
def mark(name):
    open(os.path.join(home, name + '.tmp'), 'w').close()
    os.rename(os.path.join(home, name + '.tmp'), os.path.join(home, name))
pixels = GdkPixbuf.Pixbuf.new(GdkPixbuf.Colorspace.RGB, True, 8, 32, 32)
pixels.fill(0x00ff00ff)
icon = Gtk.StatusIcon.new_from_pixbuf(pixels)
icon.set_title('Caged tray')
icon.set_tooltip_text('Caged tray')
icon.connect('notify::embedded', lambda *a: icon.is_embedded() and mark('embedded'))
icon.connect('activate', lambda *a: mark('clicked'))
mark('started')
Gtk.main()
`;

describe('Tray icons from a cage', () => {
  let w: World;
  let tray: Awaited<ReturnType<typeof startTray>> | undefined;

  const icons = async (): Promise<DockedIcon[]> => (await readTray(w.display)).icons;
  const logs = (cage: string) =>
    `--- cage log\n${w.cageLog(cage)}\n--- program log\n${w.programLog(cage, 'python3')}\n--- tray\n${tray?.log() ?? ''}`;

  before(async () => {
    w = await World.create();
    tray = await startTray(w.env);
    w.writeCage('tray', '[Cage]\nBorder=#ff0000\n');
    w.writeCage('notray', '[Cage]\nTrayIcons=false\n');
    await w.startService();
  });

  after(async () => {
    await w?.cleanup();
    await tray?.stop();
  });

  it("a caged program's tray icon docks in the host's tray marked with the cage, and a click there reaches it; TrayIcons=false docks nothing (the control)", async () => {
    // The control first, so that by the time the other icon is docked, this one would be too.
    await w.launchCommand('notray', ['python3', '-c', STATUS_ICON]);
    await w.readFileWhenWritten(w.homeFile('notray', 'started'), 30_000);
    await w.launchCommand('tray', ['python3', '-c', STATUS_ICON]);
    // Docked and given its size by the tray (it is 1x1 as it docks).
    const docked = await waitFor(
      'the icon in the host tray',
      async () =>
        (await icons()).find((i) => i.name.startsWith('[tray] ') && i.mapped && i.w > 8 && i.h > 8),
      {
        timeoutMs: 60_000,
        detail: async () => `${JSON.stringify(await icons())}\n${logs('tray')}`,
      },
    );
    assert.ok(fs.existsSync(w.homeFile('tray', 'embedded')), logs('tray'));
    // Named by the cage, then whatever title the cage's icon window has (GTK's program name).
    assert.deepEqual(
      (await icons()).map((i) => i.name.replace(/ .*/, '')),
      ['[tray]'],
      'only the TrayIcons=true cage docks',
    );
    assert.ok(!fs.existsSync(w.homeFile('notray', 'embedded')), logs('notray'));

    // The frame in the cage's colour (#ff0000) around the program's own green, across the
    // icon's middle row: red, then green, then red.
    const now = async () => (await icons()).find((i) => i.id === docked.id) ?? docked;
    const row = async (at: DockedIcon) =>
      (
        await execa(
          'import',
          [
            '-window',
            'root',
            '-crop',
            `${at.w}x1+${at.x}+${at.y + Math.floor(at.h / 2)}`,
            '-depth',
            '8',
            'txt:-',
          ],
          { env: { DISPLAY: w.display } },
        )
      ).stdout
        .split('\n')
        .map((l) => /#([0-9A-F]{6})/i.exec(l)?.[1]?.toUpperCase())
        .filter((c): c is string => c !== undefined);
    const seen = await waitFor(
      'the framed icon drawn',
      async () => {
        const colours = (await row(await now())).filter((c) => c === 'FF0000' || c === '00FF00');
        const runs = colours.filter((c, i) => i === 0 || colours[i - 1] !== c);
        return runs.join(',') === 'FF0000,00FF00,FF0000' ? runs : undefined;
      },
      {
        timeoutMs: 20_000,
        detail: async () => `${JSON.stringify(await now())} ${(await row(await now())).join(' ')}`,
      },
    );
    assert.ok(seen);

    const x = (args: string[]) => execa('xdotool', args, { env: { DISPLAY: w.display } });
    const at = await now();
    await x([
      'mousemove',
      String(at.x + Math.floor(at.w / 2)),
      String(at.y + Math.floor(at.h / 2)),
    ]);
    await x(['click', '1']);
    await w.readFileWhenWritten(w.homeFile('tray', 'clicked'), 30_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${logs('tray')}`);
    });
  });
});
