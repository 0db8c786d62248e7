// The list+watch loop (src/cluster/informer.ts) against a scripted API server: what it caches, how it
// resumes, relists and backs off, and what it reports while doing so.
import { afterEach, describe, expect, it } from 'vitest';
import { namespaceFacts } from '../../src/cluster/cluster-facts.js';
import { backoffDelayMs, Informer, type InformerTiming } from '../../src/cluster/informer.js';
import { ApiError } from '../../src/cluster/kube-api.js';
import type { NamespaceFacts } from '../../src/policy/evaluate.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { capturingLogger, FakeApi, namespace, until, type CapturedLog } from './cluster-fakes.js';

const PATH = '/api/v1/namespaces';
// Small delays so that backoffs happen in the test's lifetime; their sizes are checked in the logs.
const FAST: Partial<InformerTiming> = { backoffInitialMs: 4, backoffMaxMs: 32, shortWatchMs: 0 };

async function gauge(metrics: Metrics, name: 'informerSynced' | 'informerRestarts', resource = 'namespaces'): Promise<number> {
  const values = (await metrics[name].get()).values;
  return values.find((v) => v.labels.resource === resource)?.value ?? 0;
}

interface Setup {
  api: FakeApi;
  metrics: Metrics;
  lines: CapturedLog[];
  informer: Informer<NamespaceFacts>;
}

const running: Informer<NamespaceFacts>[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((informer) => informer.stop()));
});

function setup(options: { timing?: Partial<InformerTiming>; items?: Record<string, unknown>[]; resourceVersion?: string; now?: () => number } = {}): Setup {
  const api = new FakeApi();
  api.collections.set(PATH, { items: options.items ?? [namespace('team-a', { tenant: 'true' }, '5')], resourceVersion: options.resourceVersion ?? '10' });
  const metrics = new Metrics();
  const { logger, lines } = capturingLogger();
  const informer = new Informer<NamespaceFacts>({
    resource: 'namespaces',
    path: PATH,
    toEntry: namespaceFacts,
    api,
    logger,
    metrics,
    timing: { ...FAST, ...options.timing },
    random: () => 0.5,
    ...(options.now ? { now: options.now } : {}),
  });
  running.push(informer);
  return { api, metrics, lines, informer };
}

const listCount = (api: FakeApi): number => api.gets.filter((path) => path.startsWith(PATH)).length;
const backoffs = (lines: CapturedLog[]): number[] => lines.filter((l) => l.msg.startsWith('informer: list/watch failed')).map((l) => l.delayMs as number);

describe('Informer: first sync', () => {
  it('lists, fills the cache, then watches from the list resourceVersion with bookmarks and a server-side timeout', async () => {
    const { api, informer, metrics } = setup();
    informer.start();
    const watch = await api.nextWatch();
    expect(informer.get('team-a')).toEqual({ name: 'team-a', labels: { 'kubernetes.io/metadata.name': 'team-a', tenant: 'true' } });
    expect(informer.status()).toEqual({ synced: true, live: true, lastError: undefined, entries: 1 });
    expect(await gauge(metrics, 'informerSynced')).toBe(1);
    expect(watch.query.get('watch')).toBe('true');
    expect(watch.query.get('resourceVersion')).toBe('10');
    expect(watch.query.get('allowWatchBookmarks')).toBe('true');
    // random() = 0.5: 300 s * 1.5
    expect(watch.query.get('timeoutSeconds')).toBe('450');
    expect(watch.options.deadlineMs).toBe(450_000 + 30_000);
  });

  it('reads every page of a paginated list before swapping the cache', async () => {
    const items = ['a', 'b', 'c', 'd', 'e'].map((name) => namespace(name));
    const { api, informer } = setup({ items });
    api.collections.set(PATH, { items, resourceVersion: '10', pageSize: 2 });
    informer.start();
    await api.nextWatch();
    expect(api.gets).toEqual([`${PATH}?limit=500`, `${PATH}?limit=500&continue=2`, `${PATH}?limit=500&continue=4`]);
    expect(informer.status().entries).toBe(5);
  });

  it('is not synced while the first list fails, says why, and retries with growing delays', async () => {
    const { api, informer, metrics, lines } = setup();
    api.collections.set(PATH, new Error('connect ECONNREFUSED 127.0.0.1:6443'));
    informer.start();
    await until(() => backoffs(lines).length >= 3);
    expect(informer.status()).toMatchObject({ synced: false, live: false, lastError: 'connect ECONNREFUSED 127.0.0.1:6443' });
    expect(await gauge(metrics, 'informerSynced')).toBe(0);
    // initial 4 ms doubling, drawn from [d/2, d] with random() = 0.5
    expect(backoffs(lines).slice(0, 3)).toEqual([3, 6, 12]);
    expect(await gauge(metrics, 'informerRestarts')).toBeGreaterThanOrEqual(3);

    api.collections.set(PATH, { items: [namespace('team-a')], resourceVersion: '10' });
    await api.nextWatch();
    expect(informer.status()).toMatchObject({ synced: true, live: true, lastError: undefined });
  });

  it('reports a list the API server refuses with the Status message it sent', async () => {
    const { api, informer, lines } = setup();
    api.collections.delete(PATH);
    api.onGet = () => ({
      status: 403,
      body: { kind: 'Status', code: 403, reason: 'Forbidden', message: 'namespaces is forbidden: User "system:serviceaccount:x:y" cannot list resource "namespaces"' },
    });
    informer.start();
    await until(() => backoffs(lines).length >= 1);
    expect(informer.status().lastError).toBe(
      'list namespaces: namespaces is forbidden: User "system:serviceaccount:x:y" cannot list resource "namespaces"',
    );
  });
});

describe('Informer: events', () => {
  it('applies ADDED, MODIFIED and DELETED, and resumes from the last resourceVersion, bookmarks included', async () => {
    const { api, informer, metrics } = setup();
    informer.start();
    const watch = await api.nextWatch();
    watch.push('ADDED', namespace('team-b', {}, '11'));
    watch.push('MODIFIED', namespace('team-a', { tenant: 'false' }, '12'));
    watch.push('DELETED', namespace('team-b', {}, '13'));
    watch.push('BOOKMARK', { kind: 'Namespace', metadata: { resourceVersion: '20' } });
    await until(() => informer.get('team-a')?.labels?.tenant === 'false' && informer.get('team-b') === undefined);

    // The server's timeoutSeconds passed: a routine end, not a failure.
    watch.end();
    const next = await api.nextWatch(1);
    expect(next.query.get('resourceVersion')).toBe('20');
    expect(listCount(api)).toBe(1);
    expect(await gauge(metrics, 'informerRestarts')).toBe(0);
    expect(informer.status().live).toBe(true);
  });

  it('skips an object without a name instead of caching garbage', async () => {
    const { api, informer } = setup();
    informer.start();
    const watch = await api.nextWatch();
    watch.push('ADDED', { kind: 'Namespace', metadata: { resourceVersion: '11' } });
    watch.push('ADDED', namespace('team-c', {}, '12'));
    await until(() => informer.get('team-c') !== undefined);
    expect(informer.status().entries).toBe(2);
  });
});

describe('Informer: failures and restarts', () => {
  it('keeps the cache through a dropped connection and resumes the watch without relisting', async () => {
    const { api, informer, metrics, lines } = setup();
    informer.start();
    const watch = await api.nextWatch();
    watch.push('MODIFIED', namespace('team-a', { tenant: 'true', tier: 'gold' }, '15'));
    api.watchFailures.push(new Error('connect ECONNREFUSED 127.0.0.1:6443'));
    watch.fail(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));

    const next = await api.nextWatch(1);
    expect(next.query.get('resourceVersion')).toBe('15');
    expect(listCount(api)).toBe(1);
    expect(informer.get('team-a')?.labels?.tier).toBe('gold');
    expect(await gauge(metrics, 'informerRestarts')).toBe(2);
    expect(backoffs(lines)).toEqual([3, 6]);
    const warning = lines.find((l) => l.msg.startsWith('informer: list/watch failed'));
    expect(warning).toMatchObject({ resource: 'namespaces', err: 'aborted (ECONNRESET)', cachedEntries: 1 });
    expect(warning?.msg).toBe('informer: list/watch failed; serving the last cache and restarting after backoff');
    expect(informer.status()).toMatchObject({ synced: true, live: true });
  });

  it('is synced but not live while it waits to restart: the gauge drops to 0', async () => {
    const { api, informer, metrics } = setup({ timing: { backoffInitialMs: 10_000, backoffMaxMs: 10_000 } });
    informer.start();
    const watch = await api.nextWatch();
    watch.fail(new Error('socket hang up'));
    await until(() => !informer.status().live);
    expect(informer.status()).toMatchObject({ synced: true, live: false, lastError: 'socket hang up', entries: 1 });
    expect(await gauge(metrics, 'informerSynced')).toBe(0);
  });

  it('relists at once when the watch is told 410 Gone, and the relist drops objects deleted meanwhile', async () => {
    const { api, informer, metrics, lines } = setup({ items: [namespace('team-a', {}, '5'), namespace('team-old', {}, '6')] });
    informer.start();
    const watch = await api.nextWatch();
    api.collections.set(PATH, { items: [namespace('team-a', { tenant: 'true' }, '30')], resourceVersion: '31' });
    watch.push('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 10 (25)' });

    const next = await api.nextWatch(1);
    expect(next.query.get('resourceVersion')).toBe('31');
    expect(listCount(api)).toBe(2);
    expect(informer.get('team-old')).toBeUndefined();
    expect(informer.get('team-a')?.labels?.tenant).toBe('true');
    expect(backoffs(lines)).toEqual([]);
    expect(await gauge(metrics, 'informerRestarts')).toBe(1);
    expect(lines.find((l) => l.msg === 'informer: resourceVersion expired; relisting')?.reason).toBe('watch namespaces: too old resource version: 10 (25)');
  });

  it('treats an HTTP 410 on the watch request like the ERROR event', async () => {
    const { api, informer } = setup();
    informer.start();
    const watch = await api.nextWatch();
    api.watchFailures.push(new ApiError(410, 'watch /api/v1/namespaces: too old resource version', 'Expired'));
    watch.end();
    await api.nextWatch(1);
    expect(listCount(api)).toBe(2);
  });

  it('backs off when the watch right after a 410 relist is told 410 again without any progress', async () => {
    const { api, informer, lines } = setup();
    informer.start();
    const gone = { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' };
    (await api.nextWatch(0)).push('ERROR', gone);
    (await api.nextWatch(1)).push('ERROR', gone);
    await api.nextWatch(2);
    expect(listCount(api)).toBe(3);
    expect(backoffs(lines)).toEqual([3]);
  });

  it('relists at once again on a later 410, even when nothing changed in between (a quiet collection after two apiserver restarts)', async () => {
    const { api, informer, lines } = setup();
    informer.start();
    const gone = { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' };
    (await api.nextWatch(0)).push('ERROR', gone);
    // The relisted watch runs fine until the connection drops; the resumed watch is told 410 again.
    (await api.nextWatch(1)).fail(new Error('aborted'));
    (await api.nextWatch(2)).push('ERROR', gone);
    await api.nextWatch(3);
    expect(listCount(api)).toBe(3);
    expect(backoffs(lines)).toEqual([3]);
  });

  it('backs off and keeps its resourceVersion on an ERROR event other than 410', async () => {
    const { api, informer, lines } = setup();
    informer.start();
    (await api.nextWatch()).push('ERROR', { kind: 'Status', code: 500, reason: 'InternalError', message: 'etcdserver: request timed out' });
    const next = await api.nextWatch(1);
    expect(next.query.get('resourceVersion')).toBe('10');
    expect(listCount(api)).toBe(1);
    expect(backoffs(lines)).toEqual([3]);
    expect(lines.find((l) => l.delayMs !== undefined)?.err).toBe('watch namespaces: etcdserver: request timed out');
  });

  it('counts a watch closed at once without any event as a failure (no tight reconnect loop)', async () => {
    const { api, informer, lines } = setup({ timing: { shortWatchMs: 60_000 } });
    informer.start();
    (await api.nextWatch(0)).end();
    (await api.nextWatch(1)).end();
    await api.nextWatch(2);
    expect(backoffs(lines)).toEqual([3, 6]);
    expect(lines.find((l) => l.delayMs !== undefined)?.err).toMatch(/^the watch was closed after \d+ ms without any event$/);
  });

  it('starts the backoff afresh when the last failure is older than backoffResetMs', async () => {
    let clock = 0;
    const { api, informer, lines } = setup({ timing: { backoffResetMs: 120_000 }, now: () => clock });
    informer.start();
    (await api.nextWatch(0)).fail(new Error('reset 1'));
    (await api.nextWatch(1)).fail(new Error('reset 2'));
    await api.nextWatch(2);
    clock += 120_000;
    api.watches[2]?.fail(new Error('reset 3'));
    await api.nextWatch(3);
    expect(backoffs(lines)).toEqual([3, 6, 3]);
  });

  it('stops promptly, also in the middle of a backoff, and leaves no watch open', async () => {
    const { api, informer, metrics } = setup({ timing: { backoffInitialMs: 60_000, backoffMaxMs: 60_000 } });
    informer.start();
    const watch = await api.nextWatch();
    watch.fail(new Error('gone'));
    await until(() => !informer.status().live);
    const started = Date.now();
    await informer.stop();
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(watch.closed).toBe(true);
    expect(api.watches).toHaveLength(1);
    expect(await gauge(metrics, 'informerSynced')).toBe(0);
  });
});

describe('backoffDelayMs', () => {
  const timing = { backoffInitialMs: 500, backoffMaxMs: 30_000 };
  it.each([
    { failures: 1, random: 0, delay: 250 },
    { failures: 1, random: 1, delay: 500 },
    { failures: 2, random: 1, delay: 1_000 },
    { failures: 5, random: 0.5, delay: 6_000 },
    { failures: 7, random: 1, delay: 30_000 },
    { failures: 7, random: 0, delay: 15_000 },
    { failures: 60, random: 1, delay: 30_000 },
  ])('restart $failures with random() = $random waits $delay ms', ({ failures, random, delay }) => {
    expect(backoffDelayMs(failures, timing, () => random)).toBe(delay);
  });

  it('never waits longer than the cap, whatever the jitter', () => {
    for (let failures = 1; failures < 100; failures++) {
      expect(backoffDelayMs(failures, timing, Math.random)).toBeLessThanOrEqual(30_000);
    }
  });
});
