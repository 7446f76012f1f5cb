import type { ProcRef } from './proc.js';

// A backend's, display's or bridge's record read back from a state file is checked field by
// field before it is trusted as the part's type: the file may have been written by another
// kagome or damaged by hand, and a record missing a pid must be refused by name, not crash the
// service when the pid is signalled. Each part lists every field of its record (the mapped type
// makes a field added to the record without a check a compile error) with what it must hold.

/** One field: what it must be, said as "a string", "a process"... for the refusal. */
export interface Field {
  what: string;
  test(v: unknown): boolean;
  /** may be absent (undefined) */
  optional?: boolean;
}

/** Every field of R, each with its check. */
export type Fields<R> = { [K in keyof R]-?: Field };

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export const isProcRef = (v: unknown): v is ProcRef =>
  isObject(v) &&
  Number.isSafeInteger(v.pid) &&
  (v.pid as number) > 0 &&
  typeof v.start === 'string';

const field = (what: string, test: (v: unknown) => boolean): Field => ({ what, test });

/** The checks records are made of. */
export const F = {
  string: field('a string', (v) => typeof v === 'string'),
  number: field('a whole number', (v) => Number.isSafeInteger(v)),
  boolean: field('true or false', (v) => typeof v === 'boolean'),
  process: field('a process (a pid and its start time)', isProcRef),
  strings: field(
    'a list of strings',
    (v) => Array.isArray(v) && v.every((s) => typeof s === 'string'),
  ),
  stringMap: field(
    'a map of strings',
    (v) => isObject(v) && Object.values(v).every((s) => typeof s === 'string'),
  ),
  oneOf: (...values: readonly string[]): Field =>
    field(`one of ${values.join(', ')}`, (v) => typeof v === 'string' && values.includes(v)),
  /** an object whose fields are checked in turn */
  shape: <T>(what: string, fields: Fields<T>): Field =>
    field(what, (v) => isObject(v) && problemIn(v, fields) === undefined),
  optional: (f: Field): Field => ({ ...f, optional: true }),
};

function problemIn<R>(v: Record<string, unknown>, fields: Fields<R>): string | undefined {
  for (const [name, f] of Object.entries<Field>(fields)) {
    const value = v[name];
    if (value === undefined && f.optional) continue;
    if (!f.test(value)) return `${name} is not ${f.what}`;
  }
  return undefined;
}

/**
 * `v` as the record R of the part named `part` ("the bubblewrap sandbox's", "the sound
 * bridge's"), or what is wrong with it, naming the field.
 */
export function checkRecord<R>(part: string, v: unknown, fields: Fields<R>): R | string {
  if (!isObject(v)) return `${part} record is not an object`;
  const problem = problemIn(v, fields);
  return problem === undefined ? (v as R) : `${part} record's ${problem}`;
}

/**
 * A bridge's record, which may be a down one (`down`, the reason, and whatever of its own
 * fields it kept, perhaps none): the fields it has are checked, none is required.
 */
export function checkHeldRecord<R>(
  part: string,
  v: unknown,
  fields: Fields<R>,
): R | (Partial<R> & { down: string }) | string {
  if (!isObject(v)) return `${part} record is not an object`;
  if (v.down === undefined) return checkRecord(part, v, fields);
  if (typeof v.down !== 'string') return `${part} record's down is not a string`;
  const optional = Object.fromEntries(
    Object.entries<Field>(fields).map(([k, f]) => [k, F.optional(f)]),
  ) as Fields<R>;
  const problem = problemIn(v, optional);
  return problem === undefined
    ? (v as Partial<R> & { down: string })
    : `${part} record's ${problem}`;
}
