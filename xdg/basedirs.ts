// XDG Base Directory Specification: where user configuration, data, state and cache
// live, and the system-wide search paths for data and configuration.

import { posix } from 'node:path';
import { KagomeError } from '../lib/errors.js';

export interface BaseDirs {
  configHome: string;
  dataHome: string;
  stateHome: string;
  cacheHome: string;
  /** undefined if XDG_RUNTIME_DIR is unset or not absolute: the spec has no default for it. */
  runtimeDir: string | undefined;
  /** In precedence order, not including dataHome. */
  dataDirs: string[];
  /** In precedence order, not including configHome. */
  configDirs: string[];
}

const DEFAULT_DATA_DIRS = '/usr/local/share/:/usr/share/';
const DEFAULT_CONFIG_DIRS = '/etc/xdg';

/** Normalized, without a trailing '/', or undefined if not absolute (the spec says to ignore those). */
function absoluteDir(value: string | undefined): string | undefined {
  if (!value || !value.startsWith('/')) return undefined;
  const p = posix.normalize(value);
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

function absoluteDirs(value: string | undefined): string[] {
  return [
    ...new Set(
      (value ?? '')
        .split(':')
        .map(absoluteDir)
        .filter((d): d is string => d !== undefined),
    ),
  ];
}

function dirList(value: string | undefined, fallback: string): string[] {
  const dirs = absoluteDirs(value);
  // A list with nothing usable in it counts as unset, rather than as "no directories".
  return dirs.length > 0 ? dirs : absoluteDirs(fallback);
}

/**
 * The base directories for an environment. The *Home values that fall back to a
 * directory under HOME are computed when read, so that a caller can look at runtimeDir
 * or the lists, or check HOME itself, before anything fails for lack of a HOME; reading
 * one with neither its XDG variable nor an absolute HOME throws.
 */
export function baseDirs(env: Record<string, string | undefined>): BaseDirs {
  const home = (variable: string, under: string) => (): string => {
    const set = absoluteDir(env[variable]);
    if (set !== undefined) return set;
    const h = absoluteDir(env.HOME);
    if (h === undefined) {
      throw new KagomeError(
        'Failed',
        `cannot locate ${variable}: it is not set to an absolute path, and neither is HOME to default it to $HOME/${under}`,
      );
    }
    return posix.join(h, under);
  };
  const dirs = {
    runtimeDir: absoluteDir(env.XDG_RUNTIME_DIR),
    dataDirs: dirList(env.XDG_DATA_DIRS, DEFAULT_DATA_DIRS),
    configDirs: dirList(env.XDG_CONFIG_DIRS, DEFAULT_CONFIG_DIRS),
  } as BaseDirs;
  const getters: [keyof BaseDirs, () => string][] = [
    ['configHome', home('XDG_CONFIG_HOME', '.config')],
    ['dataHome', home('XDG_DATA_HOME', '.local/share')],
    ['stateHome', home('XDG_STATE_HOME', '.local/state')],
    ['cacheHome', home('XDG_CACHE_HOME', '.cache')],
  ];
  for (const [name, get] of getters) Object.defineProperty(dirs, name, { get, enumerable: true });
  return dirs;
}

/** Where to look for data files, most important first: dataHome, then dataDirs. */
export function dataSearchPath(dirs: BaseDirs): string[] {
  return [...new Set([dirs.dataHome, ...dirs.dataDirs])];
}

/** Where to look for configuration files, most important first: configHome, then configDirs. */
export function configSearchPath(dirs: BaseDirs): string[] {
  return [...new Set([dirs.configHome, ...dirs.configDirs])];
}
