// How far an image build is, from mmdebstrap's --verbose output: its "I:" lines name the
// phase, apt's "Get:" lines count downloads and dpkg's "Setting up" lines count installed
// packages, both against the number apt announced ("N newly installed"). Phases have fixed
// shares of the bar (measured on the full recipe: downloads and package setup take most of
// the ~40 s), and the fraction never goes backwards.

export interface BuildProgress {
  /** what is being done, for people */
  phase: string;
  /** 0..1 of the whole build */
  fraction: number;
  /** e.g. "42/253 packages" */
  detail?: string;
}

const PHASES: { match: RegExp; phase: string; at: number }[] = [
  { match: /^I: running apt-get update/, phase: 'reading package lists', at: 0.02 },
  { match: /^I: downloading packages/, phase: 'downloading packages', at: 0.05 },
  { match: /^I: extracting archives/, phase: 'extracting', at: 0.4 },
  { match: /^I: installing essential packages/, phase: 'installing packages', at: 0.5 },
  { match: /^I: installing remaining packages/, phase: 'installing packages', at: 0.5 },
  { match: /^I: cleaning package lists/, phase: 'cleaning up', at: 0.92 },
  { match: /^I: creating tarball/, phase: 'writing the image', at: 0.94 },
  { match: /^I: success/, phase: 'root filesystem done', at: 1 },
];
const DOWNLOAD = { from: 0.05, to: 0.4 };
const SETUP = { from: 0.5, to: 0.92 };

export class MmdebstrapProgress {
  private phase = 'starting';
  private fraction = 0;
  private total = 0;
  private got = 0;
  private setUp = 0;

  /** Feed one line; returns the progress when it changed. */
  line(text: string): BuildProgress | undefined {
    const before = this.fraction;
    const beforePhase = this.phase;
    let detail: string | undefined;
    const p = PHASES.find((x) => x.match.test(text));
    if (p) {
      this.phase = p.phase;
      this.fraction = Math.max(this.fraction, p.at);
    }
    const n = /^\d+ upgraded, (\d+) newly installed/.exec(text);
    // The first count is every package of the image (all are downloaded at once).
    if (n && this.total === 0) this.total = Number(n[1]);
    if (/^Get:\d+ /.test(text) && this.total) {
      this.got++;
      this.fraction = Math.max(
        this.fraction,
        DOWNLOAD.from + (DOWNLOAD.to - DOWNLOAD.from) * Math.min(1, this.got / this.total),
      );
      detail = `${Math.min(this.got, this.total)}/${this.total} packages`;
    }
    if (/^Setting up /.test(text) && this.total) {
      this.setUp++;
      this.fraction = Math.max(
        this.fraction,
        SETUP.from + (SETUP.to - SETUP.from) * Math.min(1, this.setUp / this.total),
      );
      detail = `${Math.min(this.setUp, this.total)}/${this.total} packages`;
    }
    if (this.fraction === before && this.phase === beforePhase) return undefined;
    return { phase: this.phase, fraction: this.fraction, ...(detail ? { detail } : {}) };
  }
}
