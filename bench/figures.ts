// What every benchmark here shares: figures with samples, their medians, and the table that
// prints them. Figures are printed, never asserted: targets are compared, not enforced.

import os from 'node:os';

export interface Figure {
  key: string;
  name: string;
  unit: 'ms' | 'MiB' | 'x' | '/s';
  samples: number[];
  /** upper bound the median should meet; absent for figures given only for reference */
  target?: number;
  command: string;
  error?: string;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function stats(f: Figure): { median: number; min: number; max: number } | undefined {
  if (!f.samples.length) return undefined;
  return { median: median(f.samples), min: Math.min(...f.samples), max: Math.max(...f.samples) };
}

export function verdict(f: Figure): string {
  const s = stats(f);
  if (f.target === undefined) return '—';
  if (!s) return 'no data';
  return s.median <= f.target ? 'meets' : 'misses';
}

export function fmt(v: number | undefined, unit: Figure['unit']): string {
  if (v === undefined) return '—';
  if (unit === 'x') return v.toFixed(2) + ' x';
  if (unit === 'MiB') return v.toFixed(1) + ' MiB';
  if (unit === '/s') return v.toFixed(2) + ' /s';
  return (v < 100 ? v.toFixed(1) : v.toFixed(0)) + ' ms';
}

export function positiveInt(text: string | undefined, dflt: number): number {
  if (text === undefined || text === '') return dflt;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`BENCH_RUNS must be a whole number ≥ 1, not ${JSON.stringify(text)}`);
  return n;
}

/** The figures as an aligned table: name, median, min, max, target, verdict. */
export function figureTable(figures: readonly Figure[]): string[] {
  const rows = figures.map((f) => {
    const s = stats(f);
    return [
      f.name,
      fmt(s?.median, f.unit),
      fmt(s?.min, f.unit),
      fmt(s?.max, f.unit),
      f.target === undefined ? '—' : `≤ ${fmt(f.target, f.unit)}`,
      f.error ? 'error' : verdict(f),
    ];
  });
  const head = ['figure', 'median', 'min', 'max', 'target', 'verdict'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

/** A bench's report on stdout: its title, the machine it ran on (and `note`), the figures. */
export function printReport(title: string, figures: readonly Figure[], note = ''): void {
  console.log(title);
  console.log(
    `host: ${os.cpus().length} CPUs, Linux ${os.release()}, uid ${process.getuid?.()}${note}`,
  );
  console.log('');
  for (const line of figureTable(figures)) console.log(line);
}

/** A maker of figures that collects them in `list`, in the order they are made. */
export function newFigure(list: Figure[]) {
  return (
    key: string,
    name: string,
    unit: Figure['unit'],
    command: string,
    target?: number,
  ): Figure => {
    const f: Figure = {
      key,
      name,
      unit,
      samples: [],
      command,
      ...(target !== undefined ? { target } : {}),
    };
    list.push(f);
    return f;
  };
}
