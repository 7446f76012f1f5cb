import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KagomeError } from '../../lib/errors.js';
import { baseDirs, configSearchPath, dataSearchPath } from '../../xdg/basedirs.js';

describe('baseDirs', () => {
  it('uses the spec defaults under HOME', () => {
    const d = baseDirs({ HOME: '/home/u' });
    assert.equal(d.configHome, '/home/u/.config');
    assert.equal(d.dataHome, '/home/u/.local/share');
    assert.equal(d.stateHome, '/home/u/.local/state');
    assert.equal(d.cacheHome, '/home/u/.cache');
    assert.equal(d.runtimeDir, undefined);
    assert.deepEqual(d.dataDirs, ['/usr/local/share', '/usr/share']);
    assert.deepEqual(d.configDirs, ['/etc/xdg']);
  });

  it('takes absolute values from the environment', () => {
    const d = baseDirs({
      HOME: '/home/u',
      XDG_CONFIG_HOME: '/c/',
      XDG_DATA_HOME: '/d',
      XDG_STATE_HOME: '/s',
      XDG_CACHE_HOME: '/k',
      XDG_RUNTIME_DIR: '/run/user/1000',
      XDG_DATA_DIRS: '/opt/share:/usr/share/:/opt/share',
      XDG_CONFIG_DIRS: '/etc/xdg/xdg-plasma:/etc/xdg',
    });
    assert.equal(d.configHome, '/c');
    assert.equal(d.dataHome, '/d');
    assert.equal(d.stateHome, '/s');
    assert.equal(d.cacheHome, '/k');
    assert.equal(d.runtimeDir, '/run/user/1000');
    assert.deepEqual(d.dataDirs, ['/opt/share', '/usr/share']);
    assert.deepEqual(d.configDirs, ['/etc/xdg/xdg-plasma', '/etc/xdg']);
    assert.deepEqual(dataSearchPath(d), ['/d', '/opt/share', '/usr/share']);
    assert.deepEqual(configSearchPath(d), ['/c', '/etc/xdg/xdg-plasma', '/etc/xdg']);
  });

  it('ignores relative and empty values', () => {
    const d = baseDirs({
      HOME: '/home/u/',
      XDG_CONFIG_HOME: 'relative/config',
      XDG_DATA_HOME: '',
      XDG_RUNTIME_DIR: 'run',
      XDG_DATA_DIRS: 'share::/opt/share:./x',
      XDG_CONFIG_DIRS: 'etc:also-relative',
    });
    assert.equal(d.configHome, '/home/u/.config');
    assert.equal(d.dataHome, '/home/u/.local/share');
    assert.equal(d.runtimeDir, undefined);
    assert.deepEqual(d.dataDirs, ['/opt/share']);
    // Nothing usable left: as if unset.
    assert.deepEqual(d.configDirs, ['/etc/xdg']);
    assert.deepEqual(baseDirs({ HOME: '/h', XDG_DATA_DIRS: '' }).dataDirs, [
      '/usr/local/share',
      '/usr/share',
    ]);
  });

  it('fails only when a HOME-based directory is needed and HOME is unusable', () => {
    const d = baseDirs({ XDG_CONFIG_HOME: '/c', XDG_RUNTIME_DIR: '/run/user/1' });
    assert.equal(d.configHome, '/c');
    assert.equal(d.runtimeDir, '/run/user/1');
    assert.throws(
      () => d.dataHome,
      (e: unknown) =>
        e instanceof KagomeError &&
        e.errorName === 'Failed' &&
        /XDG_DATA_HOME/.test(e.message) &&
        /HOME/.test(e.message),
    );
    assert.throws(() => baseDirs({ HOME: 'relative' }).cacheHome, KagomeError);
  });
});
