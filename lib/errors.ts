// One error type for the whole engine. Every failure a person can meet carries a
// stable name (mapped 1:1 to a D-Bus error `io.kagome.Error.<Name>`) and a message that
// says what went wrong and what to do about it. dbus/ turns these into D-Bus errors, the
// CLI prints them, notifications show them: nobody re-words them on the way.

export type ErrorName =
  | 'NoSuchCage'
  | 'NoSuchApp'
  | 'InvalidArgument'
  | 'InvalidCageFile'
  | 'InvalidDesktopEntry'
  | 'BackendFailed'
  | 'DisplayFailed'
  | 'MissingProgram'
  | 'NoSuchProgram'
  | 'NoSuchImage'
  | 'NoSuchFile'
  | 'NotPermitted'
  | 'NotSupported'
  /** a clipboard copy was asked for but the clipboard holds nothing */
  | 'NothingCopied'
  /** the request needs a running cage */
  | 'NotRunning'
  /** too many of these at once (a cage's links: OpenLinksLimit=); later ones pass again */
  | 'LimitReached'
  | 'Failed';

export const DBUS_ERROR_PREFIX = 'io.kagome.Error.';

export class KagomeError extends Error {
  readonly errorName: ErrorName;

  constructor(errorName: ErrorName, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = `KagomeError(${errorName})`;
    this.errorName = errorName;
  }

  get dbusName(): string {
    return DBUS_ERROR_PREFIX + this.errorName;
  }
}

/** A syntax or value error at a place in a file: the message always names file and line. */
export class FileError extends KagomeError {
  readonly file: string;
  readonly line: number | undefined;
  readonly key: string | undefined;
  readonly reason: string;

  constructor(
    errorName: ErrorName,
    where: { file: string; line?: number | undefined; key?: string | undefined },
    reason: string,
  ) {
    const place = where.line === undefined ? where.file : `${where.file}:${where.line}`;
    const key = where.key === undefined ? '' : ` ${where.key}:`;
    super(errorName, `${place}:${key} ${reason}`);
    this.file = where.file;
    this.line = where.line;
    this.key = where.key;
    this.reason = reason;
  }
}

/** Wrap anything thrown into a KagomeError without losing the original as `cause`. */
export function asKagomeError(e: unknown, fallback: ErrorName = 'Failed'): KagomeError {
  if (e instanceof KagomeError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new KagomeError(fallback, message, { cause: e });
}
