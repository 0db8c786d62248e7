// The bench reads the hypervisor's steal time from /proc/stat to show how much of a latency tail
// the machine itself caused.

import { describe, expect, it } from 'vitest';
import { parseStolenCpuSeconds } from '../../bench/load.js';

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
