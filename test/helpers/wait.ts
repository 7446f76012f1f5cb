import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

// The one way tests and benchmarks wait for something: a probe asked again every pollMs until
// it reports what is waited for or timeoutMs has passed. A timeout throws an Error that names
// what was waited for and what the probe saw last, so a failure says more than "timed out".
// An error the probe throws (a process that exited, a refusal) ends the wait at once.
//
//   const id = await waitFor('a window of class Xlogo', () => firstWindow('Xlogo'), { timeoutMs: 30_000 });
//   await waitFor('20 sleeps in the cage', () => count(), { timeoutMs: 5000, until: (n) => n >= 20 });
//
// lib/runtime/proc.ts has the service's own waitUntil; lib/ does not import test code.

/** What a probe returns while the thing waited for has not happened yet. */
export type Pending = undefined | null | false;

export interface WaitOptions {
  /** How long to wait before failing. */
  timeoutMs: number;
  /** The pause between two probes; 50 ms unless given. */
  pollMs?: number;
  /** More to say on a timeout, after the last value seen: a log, the windows that exist. */
  detail?: () => string | Promise<string>;
}

export interface WaitUntilOptions<T> extends WaitOptions {
  /** The probe's value is the result once this holds; until then it is the last value seen. */
  until: (value: T) => boolean;
}

/** Polls `probe` until `until` holds for its value; resolves to that value. */
export function waitFor<T>(
  what: string,
  probe: () => T | Promise<T>,
  opts: WaitUntilOptions<T>,
): Promise<T>;
/** Polls `probe` until it returns something other than undefined, null or false; resolves to that. */
export function waitFor<T>(
  what: string,
  probe: () => T | Pending | Promise<T | Pending>,
  opts: WaitOptions,
): Promise<T>;
export async function waitFor<T>(
  what: string,
  probe: () => T | Pending | Promise<T | Pending>,
  opts: WaitOptions & { until?: (value: T) => boolean },
): Promise<T> {
  const { timeoutMs, pollMs = 50, until, detail } = opts;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    const done = until
      ? until(value as T)
      : value !== undefined && value !== null && value !== false;
    if (done) return value as T;
    if (Date.now() >= deadline) {
      const more = detail ? `\n${await detail()}` : '';
      throw new Error(
        `${what}: not within ${timeoutMs / 1000} s; last seen: ${describe(value)}${more}`,
      );
    }
    await sleep(pollMs);
  }
}

function describe(value: unknown): string {
  const text =
    typeof value === 'string'
      ? JSON.stringify(value)
      : inspect(value, { depth: 4, breakLength: Infinity });
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
