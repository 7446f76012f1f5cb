import { removeState, writeState, type CageState } from '../runtime/state.js';

// Each cage's state file is written often (every launch, every program's exit) and from
// callbacks nobody awaits. Writes of one file go in order, so a burst of launches never leaves
// an older state on disk last; and all of them can be waited for (a service stopping, a test
// removing its folder), which fire-and-forget writes could not.

export class StateWriter {
  private readonly queues = new Map<string, Promise<void>>();

  /** Queues a write of `file`; the state is taken when its turn comes, so it is the latest. */
  write(file: string, state: () => CageState): Promise<void> {
    const next = (this.queues.get(file) ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => writeState(file, state()));
    this.queues.set(file, next);
    const forget = () => {
      if (this.queues.get(file) === next) this.queues.delete(file);
    };
    next.then(forget, forget);
    return next;
  }

  /** Removes `file` after the writes queued for it, which must not bring it back. */
  async remove(file: string): Promise<void> {
    await this.queues.get(file)?.catch(() => undefined);
    await removeState(file);
  }

  /** Resolves when every queued write has landed (or failed). */
  async flush(): Promise<void> {
    while (this.queues.size)
      await Promise.all([...this.queues.values()].map((p) => p.catch(() => undefined)));
  }
}
