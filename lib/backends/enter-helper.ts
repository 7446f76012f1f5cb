import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KagomeError } from '../errors.js';

// kagome-enter is kagome's one native program (lib/backends/kagome-enter.c, built by `npm run
// build` into dist/libexec/). It is found beside the compiled service, never on PATH: a
// program of that name elsewhere must not be the one that enters cages.
const HELPER = fileURLToPath(new URL('../../libexec/kagome-enter', import.meta.url));

let checked: string | undefined;

export function enterHelper(): string {
  if (checked) return checked;
  try {
    fs.accessSync(HELPER, fs.constants.X_OK);
  } catch {
    throw new KagomeError(
      'MissingProgram',
      `${HELPER} is needed to start programs in bubblewrap cages but was not built: run 'npm run build' (it compiles lib/backends/kagome-enter.c with the Debian package 'gcc')`,
    );
  }
  checked = HELPER;
  return HELPER;
}
