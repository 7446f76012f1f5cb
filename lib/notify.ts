import type { Logger } from './log.js';

// Desktop notifications through org.freedesktop.Notifications on the service's own bus
// connection (no extra process, unlike notify-send wrappers). Without a notification server
// the failure is already on the bus as a D-Bus error and in the log, so nothing else is done.

export interface Notification {
  summary: string;
  body: string;
  urgency?: 'low' | 'normal' | 'critical';
  /** id of an earlier notification to replace (progress updates) */
  replaces?: number;
  /** a freedesktop icon name; failures are the default */
  icon?: 'dialog-error' | 'dialog-warning' | 'dialog-information';
  /** 0-100: a progress bar, for long work such as an image build */
  progress?: number;
}

export interface Notifier {
  notify(n: Notification): Promise<number | undefined>;
}

/** The one call the notifier needs from a bus connection: injected, so it can be tested. */
export type NotifyCall = (args: {
  appName: string;
  replacesId: number;
  icon: string;
  summary: string;
  body: string;
  actions: string[];
  urgency: number;
  timeoutMs: number;
  progress?: number;
}) => Promise<number>;

const URGENCY = { low: 0, normal: 1, critical: 2 } as const;

export class BusNotifier implements Notifier {
  constructor(
    private readonly call: NotifyCall,
    private readonly log: Logger,
  ) {}

  async notify(n: Notification): Promise<number | undefined> {
    try {
      return await this.call({
        appName: 'kagome',
        replacesId: n.replaces ?? 0,
        icon: n.icon ?? 'dialog-error',
        summary: n.summary,
        // Notification bodies may be rendered as markup; a message quoting a file name must not be.
        body: escapeMarkup(n.body),
        actions: [],
        urgency: URGENCY[n.urgency ?? 'normal'],
        timeoutMs: -1,
        ...(n.progress !== undefined
          ? { progress: Math.max(0, Math.min(100, Math.round(n.progress))) }
          : {}),
      });
    } catch (e) {
      this.log.debug(`no notification shown (${(e as Error).message})`);
      return undefined;
    }
  }
}

export function escapeMarkup(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
