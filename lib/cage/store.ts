import fs from 'node:fs/promises';
import path from 'node:path';
import { KagomeError, asKagomeError } from '../errors.js';
import { checkCageName, CAGE_NAME_PATTERN } from './name.js';
import {
  parseCageFile,
  formatCageFile,
  type CageConfig,
  type CageFileOptions,
  type ConfigContext,
} from './config.js';

export const CAGE_SUFFIX = '.cage';

export interface CageProblem {
  name: string;
  file: string;
  error: KagomeError;
}

/** The cage files on disk. Reads are fresh every time: a hand-edited file takes effect at once. */
export class CageStore {
  constructor(
    readonly dir: string,
    private readonly ctx: ConfigContext,
  ) {}

  fileOf(name: string): string {
    return path.join(this.dir, checkCageName(name) + CAGE_SUFFIX);
  }

  async exists(name: string): Promise<boolean> {
    try {
      await fs.access(this.fileOf(name));
      return true;
    } catch {
      return false;
    }
  }

  async read(name: string): Promise<CageConfig> {
    const file = this.fileOf(name);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new KagomeError(
          'NoSuchCage',
          `no cage named "${name}": create it with 'kagome cage create ${name}' (it would live in ${file})`,
        );
      }
      throw asKagomeError(e);
    }
    return parseCageFile(bytes, file, name, this.ctx);
  }

  /** Every cage, and separately every cage file that could not be read: one bad file never hides the others. */
  async readAll(): Promise<{ cages: CageConfig[]; problems: CageProblem[] }> {
    let names: string[];
    try {
      names = (await fs.readdir(this.dir))
        .filter((f) => f.endsWith(CAGE_SUFFIX))
        .map((f) => f.slice(0, -CAGE_SUFFIX.length));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { cages: [], problems: [] };
      throw asKagomeError(e);
    }
    names.sort();
    const cages: CageConfig[] = [];
    const problems: CageProblem[] = [];
    for (const name of names) {
      const file = path.join(this.dir, name + CAGE_SUFFIX);
      if (!CAGE_NAME_PATTERN.test(name)) {
        problems.push({
          name,
          file,
          error: new KagomeError(
            'InvalidCageFile',
            `${file}: the file name is not a valid cage name (1 to 64 of A-Z a-z 0-9 _ -); rename it`,
          ),
        });
        continue;
      }
      try {
        cages.push(await this.read(name));
      } catch (e) {
        problems.push({ name, file, error: asKagomeError(e) });
      }
    }
    return { cages, problems };
  }

  /** Create a new cage file; never overwrites an existing one (the user's edits are theirs). */
  async create(name: string, opts: CageFileOptions): Promise<string> {
    const file = this.fileOf(name);
    const text = formatCageFile(opts);
    // Validate before writing so a bad option never leaves a broken file behind.
    parseCageFile(text, file, name, this.ctx);
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      await fs.writeFile(file, text, { flag: 'wx', mode: 0o600 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new KagomeError(
          'InvalidArgument',
          `cage "${name}" already exists (${file}); edit that file, or remove the cage first`,
        );
      }
      throw asKagomeError(e);
    }
    return file;
  }

  async remove(name: string): Promise<string> {
    const file = this.fileOf(name);
    try {
      await fs.unlink(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        throw new KagomeError('NoSuchCage', `no cage named "${name}" (looked for ${file})`);
      throw asKagomeError(e);
    }
    return file;
  }
}
