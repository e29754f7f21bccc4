// The controller's counters and gauges, rendered as Prometheus text on the opt-in metrics port.
// A handful of series, so a map keyed by name and labels is all it takes.

type Labels = Record<string, string>;

function key(name: string, labels: Labels): string {
  const parts = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}="${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`);
  return parts.length ? `${name}{${parts.join(',')}}` : name;
}

export class Metrics {
  readonly #values = new Map<string, number>();
  readonly #types = new Map<string, 'counter' | 'gauge'>();

  inc(name: string, labels: Labels = {}, by = 1): void {
    this.#types.set(name, 'counter');
    const k = key(name, labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + by);
  }

  set(name: string, labels: Labels, value: number): void {
    this.#types.set(name, 'gauge');
    this.#values.set(key(name, labels), value);
  }

  /** Sum of a series over all label values, e.g. every restart of every watch. */
  total(name: string, match: Labels = {}): number {
    let sum = 0;
    const want = Object.entries(match).map(([k, v]) => `${k}="${v}"`);
    for (const [k, v] of this.#values) if ((k === name || k.startsWith(`${name}{`)) && want.every((w) => k.includes(w))) sum += v;
    return sum;
  }

  render(): string {
    const lines: string[] = [];
    for (const [name, type] of [...this.#types].sort()) {
      lines.push(`# TYPE ${name} ${type}`);
      for (const [k, v] of this.#values) if (k === name || k.startsWith(`${name}{`)) lines.push(`${k} ${v}`);
    }
    return `${lines.join('\n')}\n`;
  }
}
