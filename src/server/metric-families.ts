// Counter and histogram families for the review path. prom-client's own `labels()` children hash
// and validate their label object on every inc() and observe(), and a histogram observation
// allocates: together about a tenth of a review's CPU time under load. Here a series is found once
// per label set and then counted with plain arithmetic; prom-client's Registry still formats,
// escapes and serves them, through the `get()` its metrics share (lib/registry.js duck-types
// them: name, help, type, aggregator, get).

import type { Metric, Registry } from 'prom-client';

type Labels = Readonly<Record<string, string>>;

interface Sample {
  readonly value: number;
  readonly labels: Record<string, string | number>;
  readonly metricName?: string;
}

interface Exported {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: 'sum';
  readonly values: Sample[];
}

abstract class Family<Series> {
  readonly aggregator = 'sum' as const;
  abstract readonly type: 'counter' | 'histogram';
  protected readonly series = new Map<string, { readonly labels: Labels; readonly series: Series }>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  protected abstract create(): Series;

  /**
   * The series for these label values, in the order of the label names; created at zero on first
   * use, so that rate() sees its first increment.
   */
  child(...values: readonly string[]): Series {
    if (values.length !== this.labelNames.length) {
      throw new Error(`${this.name}: ${this.labelNames.length} label values expected, got ${values.length}`);
    }
    const key = values.join('\u0000');
    let entry = this.series.get(key);
    if (!entry) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((label, i) => (labels[label] = values[i] ?? ''));
      entry = { labels, series: this.create() };
      this.series.set(key, entry);
    }
    return entry.series;
  }

  /** Registry.resetMetrics() */
  reset(): void {
    this.series.clear();
  }

  protected abstract samples(labels: Labels, series: Series): Sample[];

  async get(): Promise<Exported> {
    const values: Sample[] = [];
    for (const { labels, series } of this.series.values()) values.push(...this.samples(labels, series));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export interface CounterSeries {
  value: number;
}

export class CounterFamily extends Family<CounterSeries> {
  readonly type = 'counter' as const;

  protected create(): CounterSeries {
    return { value: 0 };
  }

  protected samples(labels: Labels, series: CounterSeries): Sample[] {
    return [{ value: series.value, labels: { ...labels } }];
  }
}

export class HistogramSeries {
  /** observations per bucket, not cumulative; the last is +Inf */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly upperBounds: readonly number[]) {
    this.counts = new Float64Array(upperBounds.length + 1);
  }

  observe(value: number): void {
    // A NaN would poison the sum forever; a review's duration is never one, so drop it.
    if (Number.isNaN(value)) return;
    let i = 0;
    while (i < this.upperBounds.length && value > (this.upperBounds[i] as number)) i += 1;
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.sum += value;
    this.count += 1;
  }
}

export class HistogramFamily extends Family<HistogramSeries> {
  readonly type = 'histogram' as const;
  private readonly upperBounds: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry);
    if (labelNames.includes('le')) throw new Error(`${name}: "le" is reserved for histogram buckets`);
    this.upperBounds = [...buckets].sort((a, b) => a - b);
  }

  protected create(): HistogramSeries {
    return new HistogramSeries(this.upperBounds);
  }

  protected samples(labels: Labels, series: HistogramSeries): Sample[] {
    const out: Sample[] = [];
    let cumulative = 0;
    this.upperBounds.forEach((le, i) => {
      cumulative += series.counts[i] ?? 0;
      out.push({ metricName: `${this.name}_bucket`, value: cumulative, labels: { le, ...labels } });
    });
    out.push(
      { metricName: `${this.name}_bucket`, value: series.count, labels: { le: '+Inf', ...labels } },
      { metricName: `${this.name}_sum`, value: series.sum, labels: { ...labels } },
      { metricName: `${this.name}_count`, value: series.count, labels: { ...labels } },
    );
    return out;
  }
}
