import type { CageConfig } from '../cage/config.js';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { cookieOf, xauthorityEntry, xauthorityLocalEntry } from '../display/xauth.js';
import { KagomeError } from '../errors.js';
import { CLIPBOARD_POLICIES, type ClipboardPolicy } from '../cage/config.js';
import { checkHeldRecord, F } from '../runtime/record-check.js';
import type { Notifier } from '../notify.js';
import type { Logger } from '../log.js';
import type { Contribution } from '../sandbox.js';
import {
  problemOf,
  type BridgeContext,
  type BridgeStatus,
  type CageBridge,
  type CageHandle,
  type HeldRecord,
} from './bridge.js';
import {
  cageDisplay,
  hostDisplay,
  ownSelection,
  readSelection,
  watchSelections,
  type Selection,
  type SelectionDisplay,
  type Watcher,
} from './selection.js';

// The clipboard between the host display and a cage's, as far as Clipboard= says:
//   to-cage / to-host / both: every copy on the allowed side is carried over as it happens;
//   ask: nothing crosses by itself; `kagome clipboard to-host|to-cage CAGE` (or the D-Bus
//        methods) copies once, and a notification says what crossed, as Qubes does;
//   none: nothing, ever.
// PRIMARY (select to copy, middle-click to paste) crosses only with ClipboardPrimary=true,
// text only unless ClipboardImages=true, and nothing larger than ClipboardMaxSize.
//
// One bridge for both displays, run by the service on the host side, instead of xpra's own
// clipboard for xpra cages: xpra 3.1 truncates contents over its size limits rather than
// refusing them (half a password pasted), its content filter exists only in the server, which
// runs inside the cage, and it cannot tell text from images. Here every check is made by the
// service on the bytes it carries, before anything reaches the other side.

export type CopyDirection = 'to-cage' | 'to-host';

export type ClipboardRecord = {
  direction: ClipboardPolicy['direction'];
  /** the cage's name: the bridge's watchers are kept by cage */
  cage: string;
};

type Held = HeldRecord<ClipboardRecord>;

interface Sync {
  watchers: Watcher[];
  /** the last contents carried, per selection, so a copy is not carried back (and back...) */
  last: Map<Selection, string>;
  /** transfers on one selection run one after another */
  queue: Map<Selection, Promise<void>>;
  problem: string;
}

/**
 * Xephyr's cookie file holds a FamilyWild entry, which python-xlib ignores; the host-side tools
 * get a copy with the same cookie for this one display, kept beside it (never in the cage).
 */
function bridgeAuthority(authFile: string, display: number): string {
  const file = `${authFile}.host`;
  if (!fs.existsSync(file)) {
    const cookie = cookieOf(fs.readFileSync(authFile));
    fs.writeFileSync(
      file,
      Buffer.concat([
        xauthorityEntry(cookie),
        xauthorityLocalEntry(cookie, os.hostname(), display),
      ]),
      { mode: 0o600 },
    );
  }
  return file;
}

function fingerprint(target: string, data: Buffer): string {
  return `${target}:${createHash('sha256').update(data).digest('hex')}`;
}

export function allows(direction: ClipboardPolicy['direction'], copy: CopyDirection): boolean {
  return direction === 'ask' || direction === 'both' || direction === copy;
}

export class ClipboardBridge implements CageBridge<ClipboardRecord> {
  readonly kind = 'clipboard';

  policyOf(config: CageConfig): string {
    return config.clipboard.direction;
  }
  private readonly syncs = new Map<string, Sync>();

  /** `hostEnv`: DISPLAY and XAUTHORITY of the host's display, PATH for xclip */
  constructor(
    private readonly hostEnv: Record<string, string>,
    private readonly log: Logger,
  ) {}

  hostSide(logFd: number): SelectionDisplay {
    return hostDisplay('the host', this.hostEnv, logFd);
  }

  cageSide(name: string, cage: CageHandle): SelectionDisplay {
    const label = `cage "${name}"`;
    const r = cage.displayOnHost;
    if (r) {
      // The cage's X server runs on the host (Xephyr): reached from here, with its own cookie.
      return hostDisplay(
        label,
        {
          ...this.hostEnv,
          DISPLAY: `:${r.number}`,
          XAUTHORITY: bridgeAuthority(r.authFile, r.number),
        },
        cage.logFd,
      );
    }
    return cageDisplay(label, cage);
  }

  async prepare(ctx: BridgeContext): Promise<Held> {
    return { direction: ctx.config.clipboard.direction, cage: ctx.config.name };
  }

  contribute(): Contribution {
    // nothing is mounted: the bridge works on the two displays from outside
    return {};
  }

  async start(ctx: BridgeContext, cage: CageHandle, record: Held): Promise<Held> {
    const direction = record.direction;
    if (direction === 'none' || direction === 'ask') return record;
    // The watchers start while the first program does: waiting for them (python and Xlib
    // loading, in the cage for xpra) added 130 to 200 ms to every cold start.
    this.startSync(ctx, cage);
    return record;
  }

  readopt(ctx: BridgeContext, cage: CageHandle, record: Held): Promise<Held> {
    return this.start(ctx, cage, {
      direction: record.direction ?? ctx.config.clipboard.direction,
      cage: ctx.config.name,
    });
  }

  private startSync(ctx: BridgeContext, cage: CageHandle): void {
    const name = ctx.config.name;
    const policy = ctx.config.clipboard;
    const selections: Selection[] = policy.primary ? ['CLIPBOARD', 'PRIMARY'] : ['CLIPBOARD'];
    const host = this.hostSide(ctx.logFd);
    const inCage = this.cageSide(name, cage);
    const sync: Sync = { watchers: [], last: new Map(), queue: new Map(), problem: '' };
    this.stopSync(name);
    this.syncs.set(name, sync);
    const carry = (from: SelectionDisplay, to: SelectionDisplay, sel: Selection) => {
      const next = (sync.queue.get(sel) ?? Promise.resolve()).then(() =>
        this.carry(name, sync, policy, from, to, sel),
      );
      sync.queue.set(
        sel,
        next.catch((e: Error) =>
          ctx.log.warn(
            `cage ${name}: clipboard: carrying ${sel} from ${from.label} to ${to.label} failed: ${e.message}`,
          ),
        ),
      );
    };
    const ended = (label: string) => (code: number) => {
      sync.problem = `the watcher of ${label} ended (exit ${code}); see the cage log`;
      ctx.log.warn(`cage ${name}: clipboard: ${sync.problem}`);
    };
    const watch = async (from: SelectionDisplay, to: SelectionDisplay) => {
      const watcher = await watchSelections(
        from,
        selections,
        (sel) => carry(from, to, sel),
        ended(from.label),
      );
      // The cage may have stopped while the watcher started.
      if (this.syncs.get(name) === sync) sync.watchers.push(watcher);
      else watcher.stop();
    };
    const toCage = allows(policy.direction, 'to-cage');
    const toHost = allows(policy.direction, 'to-host');
    const started = [
      ...(toCage ? [watch(host, inCage)] : []),
      ...(toHost ? [watch(inCage, host)] : []),
    ];
    // Once both watch, carry what was copied before: first what a program in the cage copied
    // while the watchers started (it is the newest), then what the user copied on the host
    // before the cage started. A copy carried one way is not carried back.
    const catchUp = () => {
      if (this.syncs.get(name) !== sync) return;
      for (const sel of selections) {
        if (toHost) carry(inCage, host, sel);
        if (toCage) carry(host, inCage, sel);
      }
    };
    void Promise.all(started).then(catchUp, (e: Error) => {
      sync.problem = e.message;
      ctx.log.warn(`cage ${name}: clipboard: ${e.message}`);
    });
  }

  private async carry(
    name: string,
    sync: Sync,
    policy: ClipboardPolicy,
    from: SelectionDisplay,
    to: SelectionDisplay,
    sel: Selection,
  ): Promise<void> {
    if (this.syncs.get(name) !== sync) return;
    let r = await readSelection(from, sel, policy);
    // A selection just taken can read as empty: two bridges asking its new owner at the same
    // moment, or an owner still starting up (seen as a lost copy about one test run in four).
    // The owner change that woke us says there is something, so ask again, briefly.
    for (const ms of [25, 100, 250]) {
      if (r.ok || r.why !== 'empty' || this.syncs.get(name) !== sync) break;
      await new Promise((resolve) => setTimeout(resolve, ms));
      r = await readSelection(from, sel, policy);
    }
    if (!r.ok) {
      if (r.why !== 'empty')
        this.log.info(`cage ${name}: clipboard: not carried to ${to.label}: ${r.detail}`);
      return;
    }
    const key = fingerprint(r.contents.target, r.contents.data);
    if (sync.last.get(sel) === key) return;
    sync.last.set(sel, key);
    await ownSelection(to, sel, r.contents);
  }

  private stopSync(name: string): void {
    const sync = this.syncs.get(name);
    if (!sync) return;
    this.syncs.delete(name);
    for (const w of sync.watchers) w.stop();
  }

  async stop(record: Held): Promise<void> {
    if (record.cage) this.stopSync(record.cage);
  }

  checkRecord(v: unknown): Held | string {
    return checkHeldRecord<ClipboardRecord>("the clipboard bridge's", v, {
      direction: F.oneOf(...CLIPBOARD_POLICIES),
      cage: F.string,
    });
  }

  status(r: Held): BridgeStatus {
    const policy = r.direction ?? 'none';
    if (policy === 'none') return { policy, state: 'off', problem: '' };
    const problem =
      problemOf(r) || (r.cage !== undefined ? (this.syncs.get(r.cage)?.problem ?? '') : '');
    return problem ? { policy, state: 'down', problem } : { policy, state: 'up', problem: '' };
  }
}

/** Explicit one-time copies (Clipboard=ask, or any policy that allows the direction). */
export class ClipboardCopies {
  constructor(
    private readonly cages: {
      handle(
        name: string,
      ): { config: { name: string; clipboard: ClipboardPolicy }; handle: CageHandle } | undefined;
      exists(name: string): Promise<boolean>;
    },
    private readonly bridge: ClipboardBridge,
    private readonly notifier: Notifier,
    private readonly log: Logger,
  ) {}

  async copy(name: string, direction: CopyDirection): Promise<{ kind: string; bytes: number }> {
    const running = this.cages.handle(name);
    if (!running) {
      if (!(await this.cages.exists(name)))
        throw new KagomeError('NoSuchCage', `no cage named "${name}"`);
      throw new KagomeError(
        'NotRunning',
        `cage "${name}" is not running: start a program in it first`,
      );
    }
    const policy = running.config.clipboard;
    if (!allows(policy.direction, direction)) {
      throw new KagomeError(
        'NotPermitted',
        `cage "${name}" has Clipboard=${policy.direction}, which does not allow copies ${direction === 'to-host' ? 'from the cage to the host' : 'from the host into the cage'}; change Clipboard= in its cage file`,
      );
    }
    const host = this.bridge.hostSide(running.handle.logFd);
    const inCage = this.bridge.cageSide(name, running.handle);
    const [from, to] = direction === 'to-cage' ? [host, inCage] : [inCage, host];
    let r = await readSelection(from, 'CLIPBOARD', policy);
    // As in carry(): a selection just taken reads as empty while the bridges of other cages
    // ask its new owner at the same moment (seen in CI right after a host copy).
    for (const ms of [25, 100, 250]) {
      if (r.ok || r.why !== 'empty') break;
      await new Promise((resolve) => setTimeout(resolve, ms));
      r = await readSelection(from, 'CLIPBOARD', policy);
    }
    if (!r.ok)
      throw new KagomeError(
        r.why === 'empty' ? 'NothingCopied' : 'NotPermitted',
        `nothing was copied: ${r.detail}`,
      );
    await ownSelection(to, 'CLIPBOARD', r.contents);
    const what = `${r.contents.data.length} bytes of ${r.contents.kind === 'image' ? 'image' : 'text'}`;
    this.log.info(
      `cage ${name}: clipboard: copied ${what} ${direction === 'to-cage' ? 'from the host into the cage' : 'from the cage to the host'}`,
    );
    await this.notifier.notify({
      summary:
        direction === 'to-cage' ? `Clipboard copied into ${name}` : `Clipboard copied from ${name}`,
      body: `${what} ${direction === 'to-cage' ? `from the host's clipboard, now on cage ${name}'s` : `from cage ${name}'s clipboard, now on the host's`}`,
      icon: 'dialog-information',
      urgency: 'low',
    });
    return { kind: r.contents.kind, bytes: r.contents.data.length };
  }
}
