// The file watch behind policy and certificate hot reload, on volumes laid out and updated the way
// the kubelet does it (dir/..<timestamp>/file, dir/..data -> ..<timestamp>, dir/file -> ..data/file).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { watchFiles, type FileWatch } from '../../src/config/file-watch.js';
import { AtomicVolume } from '../ops/atomic-volume.js';

/** Resolves when `condition` holds, polling every 10 ms; rejects after `timeoutMs`. */
async function eventually(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((done) => setTimeout(done, 10));
  }
}

const text = (contents: Buffer[]): string[] => contents.map((content) => content.toString('utf8'));

describe('watchFiles on a kubelet-style volume', () => {
  let dir: string;
  let volume: AtomicVolume;
  let watch: FileWatch | undefined;
  let changes: string[][];
  let errors: Error[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sandbox-webhook-watch-'));
    volume = new AtomicVolume(join(dir, 'volume'));
    volume.write({ 'tls.crt': 'cert 1', 'tls.key': 'key 1' });
    changes = [];
    errors = [];
  });

  afterEach(() => {
    watch?.close();
    watch = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  const start = (initial?: Buffer[], intervalMs = 60_000): FileWatch =>
    (watch = watchFiles(
      [volume.path('tls.crt'), volume.path('tls.key')],
      intervalMs,
      (contents) => void changes.push(text(contents)),
      (error) => void errors.push(error),
      initial,
    ));

  it('lays the volume out like the kubelet: one timestamped directory, ..data and symlinked names', () => {
    volume.write({ 'tls.crt': 'cert 2', 'tls.key': 'key 2' });
    const entries = volume.entries();
    expect(entries).toEqual(expect.arrayContaining(['..data', 'tls.crt', 'tls.key']));
    expect(entries.filter((name) => /^\.\.\d{4}_/.test(name))).toHaveLength(1);
  });

  it('notices a ..data swap through the directory watch, without waiting for the poll', async () => {
    start([Buffer.from('cert 1'), Buffer.from('key 1')]);
    volume.write({ 'tls.crt': 'cert 2', 'tls.key': 'key 2' });
    await eventually(() => changes.length === 1);
    expect(changes).toEqual([['cert 2', 'key 2']]);
    volume.write({ 'tls.crt': 'cert 3', 'tls.key': 'key 3' });
    await eventually(() => changes.length === 2);
    expect(changes[1]).toEqual(['cert 3', 'key 3']);
    expect(errors).toEqual([]);
  });

  it('notices a swap by polling where no watch can be set (the directory did not exist yet)', async () => {
    const later = join(dir, 'later');
    watch = watchFiles(
      [join(later, 'policy.yaml')],
      100,
      (contents) => void changes.push(text(contents)),
      (error) => void errors.push(error),
      [Buffer.from('policy 1')],
    );
    await eventually(() => errors.length === 1);
    new AtomicVolume(later).write({ 'policy.yaml': 'policy 2' });
    await eventually(() => changes.length === 1);
    expect(changes).toEqual([['policy 2']]);
    expect(errors).toHaveLength(1);
  });

  it('takes the first read as the baseline when no initial contents are given', async () => {
    start();
    await watch!.check();
    expect(changes).toEqual([]);
    volume.write({ 'tls.crt': 'cert 2', 'tls.key': 'key 1' });
    await watch!.check();
    expect(changes).toEqual([['cert 2', 'key 1']]);
  });

  it('reports a change that happened before the watch started when the initial contents are older', async () => {
    const initial = [Buffer.from('cert 1'), Buffer.from('key 1')];
    volume.write({ 'tls.crt': 'cert 2', 'tls.key': 'key 2' });
    start(initial);
    await watch!.check();
    expect(changes).toEqual([['cert 2', 'key 2']]);
  });

  it('does not call again for contents already seen, even across swaps that change nothing', async () => {
    start([Buffer.from('cert 1'), Buffer.from('key 1')]);
    volume.write({ 'tls.crt': 'cert 1', 'tls.key': 'key 1' });
    await watch!.check();
    await watch!.check();
    expect(changes).toEqual([]);
  });

  it('passes a throwing onChange to onError and offers that content again only once it changes', async () => {
    let calls = 0;
    watch = watchFiles(
      [volume.path('tls.crt')],
      60_000,
      () => {
        calls += 1;
        throw new Error('rejected');
      },
      (error) => void errors.push(error),
      [Buffer.from('cert 1')],
    );
    volume.write({ 'tls.crt': 'cert 2' });
    await watch.check();
    await watch.check();
    expect(calls).toBe(1);
    expect(errors.map((e) => e.message)).toEqual(['rejected']);
    volume.write({ 'tls.crt': 'cert 3' });
    await watch.check();
    expect(calls).toBe(2);
  });

  it('reports the same read error once, not on every poll, and again after the files came back', async () => {
    watch = watchFiles(
      [join(dir, 'missing.yaml')],
      60_000,
      (contents) => void changes.push(text(contents)),
      (error) => void errors.push(error),
      [Buffer.from('policy')],
    );
    await watch.check();
    await watch.check();
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toContain('ENOENT');
  });

  it('stops calling after close', async () => {
    start([Buffer.from('cert 1'), Buffer.from('key 1')]);
    watch!.close();
    volume.write({ 'tls.crt': 'cert 2', 'tls.key': 'key 2' });
    await watch!.check();
    await new Promise((done) => setTimeout(done, 200));
    expect(changes).toEqual([]);
  });
});
