// The service logs to stderr: under systemd that is the journal, under a test a file.
export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export function stderrLogger(prefix = 'kagome', debug = Boolean(process.env.KAGOME_DEBUG)): Logger {
  const line = (level: string, msg: string) =>
    process.stderr.write(`${prefix}[${process.pid}] ${level}: ${msg}\n`);
  return {
    debug: (m) => debug && line('debug', m),
    info: (m) => line('info', m),
    warn: (m) => line('warning', m),
    error: (m) => line('error', m),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
