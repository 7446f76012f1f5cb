import { KagomeError } from '../errors.js';

// Names become file names, directory names and D-Bus object path elements, so they are
// restricted to what is safe in all three; `..`, `/` and empty names can never appear.
export const CAGE_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function checkCageName(name: unknown): string {
  if (typeof name !== 'string' || !CAGE_NAME_PATTERN.test(name)) {
    const shown =
      typeof name === 'string'
        ? JSON.stringify(name.length > 80 ? name.slice(0, 80) + '…' : name)
        : typeof name;
    throw new KagomeError(
      'InvalidArgument',
      `invalid cage name ${shown}: a cage name is 1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'`,
    );
  }
  return name;
}
