import { asKagomeError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CageConfig } from './config.js';
import type { Contribution } from '../sandbox.js';
import {
  notStarted,
  type BridgeContext,
  type BridgeKind,
  type BridgeRecord,
  type BridgeStatus,
  type CageBridge,
  type CageHandle,
  type SandboxHandle,
} from '../bridges/bridge.js';

// A cage's bridges (sound, clipboard, its session bus, ...) taken through each step of its life
// together, whatever they are: adding one is a line in the service's list, never a case here.
// Bridges never fail a cage: one that cannot come up is recorded as down, with the reason.

export type BridgeRecords = Record<string, BridgeRecord>;

export class BridgeSet {
  constructor(
    private readonly bridges: CageBridge[],
    private readonly log: Logger,
  ) {}

  async prepare(bctx: BridgeContext): Promise<BridgeRecords> {
    const records = await Promise.all(this.bridges.map((b) => b.prepare(bctx)));
    return Object.fromEntries(this.bridges.map((b, i) => [b.kind, records[i]!]));
  }

  /** Each bridge's mounts and environment, in the service's order; also on re-adoption. */
  contribute(
    bctx: BridgeContext,
    records: BridgeRecords,
  ): { from: string; contribution: Contribution }[] {
    return this.bridges.map((b) => ({
      from: `the ${b.kind} bridge`,
      contribution: b.contribute(bctx, records[b.kind] ?? notStarted()),
    }));
  }

  /** Those that need no display start while it does; the others keep their prepared record. */
  async startWithSandbox(
    bctx: BridgeContext,
    handle: SandboxHandle,
    records: BridgeRecords,
  ): Promise<BridgeRecords> {
    const out = { ...records };
    await Promise.all(
      this.bridges.map(async (b) => {
        if (!b.startWithSandbox) return;
        out[b.kind] = await this.guarded(bctx, b, records, (record) =>
          b.startWithSandbox!(bctx, handle, record),
        );
      }),
    );
    return out;
  }

  /** Once the cage and its display run (`start`), or after a service restart (`readopt`). */
  async start(
    bctx: BridgeContext,
    handle: CageHandle,
    records: BridgeRecords,
    how: 'start' | 'readopt',
  ): Promise<BridgeRecords> {
    const out: BridgeRecords = {};
    await Promise.all(
      this.bridges.map(async (b) => {
        out[b.kind] = await this.guarded(bctx, b, records, (record) =>
          how === 'start' ? b.start(bctx, handle, record) : b.readopt(bctx, handle, record),
        );
      }),
    );
    return out;
  }

  async stop(name: string, records: BridgeRecords): Promise<void> {
    await Promise.all(
      this.bridges
        .filter((b) => records[b.kind])
        .map((b) =>
          b
            .stop(records[b.kind]!)
            .catch((e) =>
              this.log.warn(
                `cage ${name}: stopping the ${b.kind} bridge: ${asKagomeError(e).message}`,
              ),
            ),
        ),
    );
  }

  /**
   * The records of a state file read back, each checked by its bridge, or what is wrong with
   * the first that is not right. A kind this kagome has no bridge for is kept as it is: no
   * bridge here will touch it.
   */
  checkRecords(records: BridgeRecords): BridgeRecords | string {
    const out: BridgeRecords = {};
    for (const [kind, record] of Object.entries(records)) {
      const bridge = this.bridges.find((b) => b.kind === kind);
      const checked: BridgeRecord | string = bridge ? bridge.checkRecord(record) : record;
      if (typeof checked === 'string') return checked;
      out[kind] = checked;
    }
    return out;
  }

  /** What `kagome list` shows: the policy, and whether the bridge is up. */
  status(
    kind: BridgeKind,
    config: CageConfig | undefined,
    records: BridgeRecords | undefined,
  ): BridgeStatus {
    const bridge = this.bridges.find((b) => b.kind === kind);
    const policy = bridge && config ? bridge.policyOf(config) : '';
    const record = records?.[kind];
    if (!bridge || !record) return { policy, state: 'off', problem: '' };
    return bridge.status(record);
  }

  private async guarded(
    bctx: BridgeContext,
    b: CageBridge,
    records: BridgeRecords,
    step: (record: BridgeRecord) => Promise<BridgeRecord>,
  ): Promise<BridgeRecord> {
    // A cage started without this bridge has no record of it: down, with none of its fields.
    const record = records[b.kind] ?? notStarted();
    try {
      return await step(record);
    } catch (e) {
      const problem = asKagomeError(e).message;
      this.log.warn(`cage ${bctx.config.name}: ${b.kind} bridge: ${problem}`);
      return { ...record, down: problem };
    }
  }
}
