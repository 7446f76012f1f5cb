import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CageDefaultApps } from '../../lib/default-apps.js';
import type { CageManager, ProgramInfo } from '../../lib/cage/manager.js';
import type { HostFile } from '../../lib/grants/host-file.js';
import { silentLogger } from '../../lib/log.js';

// "Open in cage" without a program: the cage's default for the file's type, unless another
// program for that type already runs in the cage (a page opened in the Firefox cage goes to
// that Firefox, even where the cage's rules rank Chromium first).

describe('the program a file opens with in a cage', () => {
  let root: string;
  let running: string[][];
  let page: HostFile;

  const write = (rel: string, text: string) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
  };
  const fakeManager = () =>
    ({
      view: () => ({
        hostPathOf: (p: string) => path.join(root, 'cage', p),
        env: { HOME: '/home/u', XDG_DATA_DIRS: '/usr/share' },
      }),
      programs: () =>
        running.map(
          (argv, i) =>
            ({
              id: i + 1,
              cage: 'web',
              argv,
              pid: 1000 + i,
              pidStart: '',
              startedAt: new Date(),
            }) as ProgramInfo,
        ),
    }) as unknown as CageManager;
  const chosen = async () =>
    (await new CageDefaultApps(fakeManager(), silentLogger).appsFor('web', [page]))[0]!.id;

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'kagome-defaults-'));
    running = [];
    const entry = (id: string, exec: string) =>
      write(
        `cage/usr/share/applications/${id}`,
        `[Desktop Entry]\nType=Application\nName=${id}\nExec=${exec}\nMimeType=text/html;\n`,
      );
    entry('chromium.desktop', '/usr/bin/chromium %U');
    entry('firefox-esr.desktop', '/usr/lib/firefox-esr/firefox-esr %u');
    entry('editor.desktop', 'editor %f');
    write(
      'cage/usr/share/applications/mimeinfo.cache',
      '[MIME Cache]\ntext/html=chromium.desktop;firefox-esr.desktop;editor.desktop;\n',
    );
    write('page.html', '<!DOCTYPE html><html><body>hello</body></html>\n');
    page = {
      fd: -1,
      path: Buffer.from(path.join(root, 'page.html')),
      dev: 0,
      ino: 0,
      writable: false,
    } as HostFile;
  });

  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it("takes the cage's default when no program for the type runs there", async () => {
    assert.equal(await chosen(), 'chromium.desktop');
    running = [['xterm']];
    assert.equal(await chosen(), 'chromium.desktop');
  });

  it('takes the program for the type that already runs in the cage, by the program its Exec starts', async () => {
    running = [['xterm'], ['/usr/lib/firefox-esr/firefox-esr']];
    assert.equal(await chosen(), 'firefox-esr.desktop');
    // Started by name from the command line, it is the same program.
    running = [['firefox-esr', '--new-window']];
    assert.equal(await chosen(), 'firefox-esr.desktop');
  });

  it('keeps the default when it runs too', async () => {
    running = [['/usr/lib/firefox-esr/firefox-esr'], ['/usr/bin/chromium']];
    assert.equal(await chosen(), 'chromium.desktop');
  });
});
