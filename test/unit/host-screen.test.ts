import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseXdpyinfo, parseXftDpi, scaleEnvOf } from '../../lib/display/host-screen.js';
import { xpraServerArgv } from '../../lib/display/xpra.js';

describe("the host screen's facts", () => {
  it("reads the default screen's size and DPI from xdpyinfo", () => {
    const text = [
      'name of display:    :1',
      'default screen number:    1',
      'number of screens:    2',
      '',
      'screen #0:',
      '  dimensions:    800x600 pixels (203x152 millimeters)',
      '  resolution:    100x100 dots per inch',
      'screen #1:',
      '  dimensions:    2560x1440 pixels (542x305 millimeters)',
      '  resolution:    120x119 dots per inch',
    ].join('\n');
    assert.deepEqual(parseXdpyinfo(text), { size: '2560x1440', dpi: 120 });
    assert.deepEqual(parseXdpyinfo(''), {});
  });

  it('reads Xft.dpi from xprop -root RESOURCE_MANAGER, and nothing else', () => {
    assert.equal(
      parseXftDpi('RESOURCE_MANAGER(STRING) = "Xft.antialias:\\t1\\nXft.dpi:\\t120\\n"'),
      '120',
    );
    assert.equal(parseXftDpi('RESOURCE_MANAGER(STRING) = "Xft.dpi:\\t96.5\\n"'), '96.5');
    assert.equal(parseXftDpi('RESOURCE_MANAGER(STRING) = "XTerm*Xft.dpi:\\t300\\n"'), undefined);
    assert.equal(parseXftDpi('RESOURCE_MANAGER:  not found.'), undefined);
    assert.equal(parseXftDpi('RESOURCE_MANAGER(STRING) = "Xft.dpi:\\t0\\n"'), undefined);
  });

  it('passes on scale variables that hold numbers only', () => {
    assert.deepEqual(
      scaleEnvOf({
        GDK_SCALE: '2',
        QT_SCALE_FACTOR: '1.5',
        GDK_DPI_SCALE: '$(id)',
        QT_SCREEN_SCALE_FACTORS: 'DP-1=2',
        PATH: '/usr/bin',
      }),
      { GDK_SCALE: '2', QT_SCALE_FACTOR: '1.5' },
    );
  });

  it("starts the cage's Xvfb at the host's DPI and turns xpra's Xinerama faking off", () => {
    const argv = xpraServerArgv('1920x1080', 120);
    assert.match(
      argv.find((a) => a.startsWith('--xvfb='))!,
      / -dpi 120 /,
    );
    // Empty: xpra 3.1 takes "no" for true.
    assert.deepEqual(
      argv.filter((a) => a.startsWith('--fake-xinerama')),
      ['--fake-xinerama='],
    );
  });
});
