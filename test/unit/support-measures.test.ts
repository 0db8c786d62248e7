// The measures the bench and the operations tests report: the hypervisor's steal time and a
// process's CPU time from /proc, and nearest-rank percentiles.

import { describe, expect, it } from 'vitest';
import { parseCpuTimeMs, parseStolenCpuSeconds } from '../support/proc.js';
import { median, percentile } from '../support/stats.js';

describe('parseStolenCpuSeconds', () => {
  it.each([
    ['a virtual machine with steal', 'cpu  1632896 0 220738 1334936 3804 0 52362 32957 0 0\ncpu0 816448 0 110369 667468 1902 0 26181 16478 0 0\n', 329.57],
    ['a machine that never had any stolen', 'cpu  100 0 50 9000 10 0 5 0 0 0\n', 0],
    ['the summary line after other lines', 'intr 1 2 3\ncpu  1 2 3 4 5 6 7 250\n', 2.5],
  ])('%s', (_name, stat, seconds) => {
    expect(parseStolenCpuSeconds(stat)).toBeCloseTo(seconds, 6);
  });

  it.each([
    ['a kernel without the steal field', 'cpu  100 0 50 9000 10 0 5\n'],
    ['no summary line', 'cpu0 1 2 3 4 5 6 7 8\n'],
    ['a steal field that is not a number', 'cpu  1 2 3 4 5 6 7 x 0 0\n'],
    ['nothing', ''],
  ])('none for %s', (_name, stat) => {
    expect(parseStolenCpuSeconds(stat)).toBeUndefined();
  });
});

describe('parseCpuTimeMs', () => {
  it.each([
    ['a plain command name', '4242 (node) S 1 4242 4242 0 -1 4194560 9000 0 0 0 1234 567 0 0 20 0 11 0 100 1000000 20000', 18_010],
    ['a command name with spaces and parentheses', '77 (kube (api) server) R 1 77 77 0 -1 0 0 0 0 0 5 3 0 0 20 0 1 0 1 1 1', 80],
  ])('utime + stime of %s', (_name, stat, ms) => {
    expect(parseCpuTimeMs(stat)).toBe(ms);
  });

  it('refuses a line without the time fields', () => {
    expect(() => parseCpuTimeMs('12 (x) S 1')).toThrow(/no utime and stime/);
  });
});

describe('percentile', () => {
  it.each([
    ['the median of an odd count', [5, 1, 3], 50, 3],
    ['the median of an even count (nearest rank: the lower)', [4, 1, 3, 2], 50, 2],
    ['p99 of a hundred values', Array.from({ length: 100 }, (_, i) => 100 - i), 99, 99],
    ['p100 is the largest', [2, 9, 4], 100, 9],
    ['p0 is the smallest', [2, 9, 4], 0, 2],
  ])('%s', (_name, values, p, expected) => {
    expect(percentile(values, p)).toBe(expected);
  });

  it('is NaN for no values, and leaves its input in its order', () => {
    expect(percentile([], 50)).toBeNaN();
    const values = [3, 1, 2];
    expect(median(values)).toBe(2);
    expect(values).toEqual([3, 1, 2]);
  });
});
