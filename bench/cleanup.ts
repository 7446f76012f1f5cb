// What every benchmark that starts real daemons needs: its cleanup runs once, whether the run
// ends, fails, is interrupted, or overruns its watchdog, so no cage or server is left behind.

export function cleanupGuard(
  cleanupAll: () => Promise<void>,
  watchdogMs: number,
  log: (m: string) => void,
): { cleanupOnce: () => Promise<void>; disarm: () => void } {
  let cleaning: Promise<void> | undefined;
  const cleanupOnce = (): Promise<void> => (cleaning ??= cleanupAll());
  const abort = (why: string): void => {
    log(`${why}: cleaning up`);
    void cleanupOnce().finally(() => process.exit(2));
  };
  process.once('SIGINT', () => abort('interrupted'));
  process.once('SIGTERM', () => abort('terminated'));
  const watchdog = setTimeout(
    () => abort(`still running after ${watchdogMs / 1000} s`),
    watchdogMs,
  );
  watchdog.unref();
  return { cleanupOnce, disarm: () => clearTimeout(watchdog) };
}
