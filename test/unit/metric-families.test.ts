// The counter and histogram families the review path updates: what Prometheus scrapes from them
// through prom-client's Registry must read exactly as prom-client's own metrics would.

import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CounterFamily, HistogramFamily } from '../../src/server/metric-families.js';

const BUCKETS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 10];

describe('a counter family', () => {
  it('is scraped as the prom-client counter with the same label values would be', async () => {
    const ours = new Registry();
    const family = new CounterFamily('reviews_total', 'Reviews.', ['rule', 'outcome'], ours);
    const theirs = new Registry();
    const counter = new Counter({ name: 'reviews_total', help: 'Reviews.', labelNames: ['rule', 'outcome'], registers: [theirs] });
    // Label values Prometheus requires escaped: a quote, a backslash, a newline.
    for (const [rule, outcome, times] of [['tenants', 'patched', 3], ['say "hi"\\\n', 'denied', 1]] as const) {
      const series = family.child(rule, outcome);
      for (let i = 0; i < times; i++) series.value += 1;
      counter.inc({ rule, outcome }, times);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it('returns the same series for the same label values', () => {
    const family = new CounterFamily('reviews_total', 'Reviews.', ['rule'], new Registry());
    expect(family.child('a')).toBe(family.child('a'));
    expect(family.child('a')).not.toBe(family.child('b'));
  });

  it('refuses label values that do not match its label names', () => {
    const family = new CounterFamily('reviews_total', 'Reviews.', ['rule', 'outcome'], new Registry());
    expect(() => family.child('only-one')).toThrow('reviews_total: 2 label values expected, got 1');
  });

  it('is emptied by Registry.resetMetrics() and listed by getMetricsAsJSON()', async () => {
    const registry = new Registry();
    const family = new CounterFamily('reviews_total', 'Reviews.', ['rule'], registry);
    family.child('a').value += 2;
    expect(await registry.getMetricsAsJSON()).toMatchObject([{ name: 'reviews_total', type: 'counter', values: [{ labels: { rule: 'a' }, value: 2 }] }]);
    registry.resetMetrics();
    expect(await registry.metrics()).not.toMatch(/^reviews_total\{/m);
  });
});

describe('a histogram family', () => {
  it('is scraped as the prom-client histogram fed the same observations would be', async () => {
    const ours = new Registry();
    const family = new HistogramFamily('duration_seconds', 'Durations.', ['outcome'], BUCKETS, ours);
    const theirs = new Registry();
    const histogram = new Histogram({ name: 'duration_seconds', help: 'Durations.', labelNames: ['outcome'], buckets: BUCKETS, registers: [theirs] });
    // On a bound, inside buckets, past the last bound, and zero.
    const observations: Array<[string, number]> = [['patched', 0.005], ['patched', 0.0051], ['patched', 0.3], ['denied', 12], ['denied', 0], ['patched', 10]];
    for (const [outcome, seconds] of observations) {
      family.child(outcome).observe(seconds);
      histogram.observe({ outcome }, seconds);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it('counts a value equal to a bound in that bucket (le: less than or equal)', async () => {
    const registry = new Registry();
    new HistogramFamily('d_seconds', 'D.', [], [1, 2], registry).child().observe(1);
    expect(await registry.metrics()).toContain('d_seconds_bucket{le="1"} 1\nd_seconds_bucket{le="2"} 1\nd_seconds_bucket{le="+Inf"} 1');
  });

  it('drops a NaN instead of poisoning the sum', async () => {
    const registry = new Registry();
    const series = new HistogramFamily('d_seconds', 'D.', [], [1], registry).child();
    series.observe(Number.NaN);
    series.observe(0.5);
    expect(series.count).toBe(1);
    expect(await registry.metrics()).toContain('d_seconds_sum 0.5\nd_seconds_count 1');
  });

  it('keeps "le" for its buckets', () => {
    expect(() => new HistogramFamily('d_seconds', 'D.', ['le'], [1], new Registry())).toThrow('"le" is reserved');
  });
});
