// ClusterFacts from the informer caches (src/cluster/cluster-facts.ts, startCluster in index.ts):
// cache hits, the direct lookup on a miss and its failures, RuntimeClass states, readiness, and that a
// failed lookup never lets a tenant pod run unsandboxed.
import { afterEach, describe, expect, it } from 'vitest';
import { admit } from '../../src/admission/admit.js';
import { decodeReview } from '../../src/admission/review.js';
import { InformerFacts, namespaceFacts, runtimeClassFact, type PresentRuntimeClass } from '../../src/cluster/cluster-facts.js';
import { startCluster, type ClusterConnection } from '../../src/cluster/index.js';
import type { InformerStatus } from '../../src/cluster/informer.js';
import { DeadlineError } from '../../src/cluster/kube-api.js';
import type { NamespaceFacts } from '../../src/policy/evaluate.js';
import { Metrics } from '../../src/telemetry/metrics.js';
import { policyFromSpec } from '../support/policy.js';
import { podReview } from '../support/review.js';
import { capturingLogger, FakeApi, namespace, runtimeClass, until, type GetAnswer } from './cluster-fakes.js';

const TENANT = 'sandbox-webhook.io/tenant';

/** An informer stand-in: a fixed cache and status. */
function cacheOf<T>(entries: Record<string, T>, status: Partial<InformerStatus> = {}): { get(name: string): T | undefined; status(): InformerStatus } {
  return {
    get: (name) => entries[name],
    status: () => ({ synced: true, live: true, lastError: undefined, entries: Object.keys(entries).length, ...status }),
  };
}

async function lookups(metrics: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const value of (await metrics.namespaceLookups.get()).values) out[String(value.labels.result)] = value.value;
  return out;
}

function factsWith(options: { namespaces?: Record<string, NamespaceFacts>; onGet?: (path: string) => GetAnswer | Promise<GetAnswer> } = {}) {
  const api = new FakeApi();
  if (options.onGet) api.onGet = options.onGet;
  const metrics = new Metrics();
  const { logger, lines } = capturingLogger();
  const facts = new InformerFacts({
    namespaces: cacheOf(options.namespaces ?? {}),
    runtimeClasses: cacheOf({ gvisor: runtimeClassFact(runtimeClass('gvisor', { scheduling: { nodeSelector: { pool: 'gvisor' } } })) as PresentRuntimeClass }),
    api,
    metrics,
    logger,
    lookupTimeoutMs: 1000,
  });
  return { api, metrics, facts, lines };
}

describe('conversion of API objects', () => {
  it('keeps a namespace name and labels, frozen', () => {
    const facts = namespaceFacts(namespace('team-a', { [TENANT]: 'true' }));
    expect(facts).toEqual({ name: 'team-a', labels: { 'kubernetes.io/metadata.name': 'team-a', [TENANT]: 'true' } });
    expect(Object.isFrozen(facts?.labels)).toBe(true);
  });

  it('gives a namespace without labels an empty label set (known, not unknown)', () => {
    expect(namespaceFacts({ metadata: { name: 'bare' } })).toEqual({ name: 'bare', labels: {} });
  });

  it.each([
    {
      name: 'a RuntimeClass with scheduling keeps handler, nodeSelector, tolerations and overhead',
      object: runtimeClass('gvisor', {
        overhead: { podFixed: { cpu: '100m', memory: '64Mi' } },
        scheduling: {
          nodeSelector: { 'sandbox.gvisor.dev/runtime': 'gvisor' },
          tolerations: [{ key: 'sandbox.gvisor.dev/runtime', operator: 'Equal', value: 'gvisor', effect: 'NoSchedule' }],
        },
      }),
      fact: {
        state: 'present',
        handler: 'runsc',
        nodeSelector: { 'sandbox.gvisor.dev/runtime': 'gvisor' },
        overheadPodFixed: { cpu: '100m', memory: '64Mi' },
        tolerations: [{ key: 'sandbox.gvisor.dev/runtime', operator: 'Equal', value: 'gvisor', effect: 'NoSchedule' }],
      },
    },
    {
      name: 'a RuntimeClass without scheduling has nodeSelector undefined',
      object: runtimeClass('gvisor'),
      fact: { state: 'present', handler: 'runsc', nodeSelector: undefined, overheadPodFixed: undefined, tolerations: [] },
    },
    {
      name: 'a RuntimeClass whose scheduling has only tolerations has an empty nodeSelector',
      object: runtimeClass('gvisor', { scheduling: { tolerations: [{ operator: 'Exists' }] } }),
      fact: { state: 'present', handler: 'runsc', nodeSelector: {}, overheadPodFixed: undefined, tolerations: [{ operator: 'Exists' }] },
    },
  ])('$name', ({ object, fact }) => {
    expect(runtimeClassFact(object)).toEqual(fact);
  });

  it('skips a RuntimeClass without a handler', () => {
    expect(runtimeClassFact({ metadata: { name: 'broken' } })).toBeUndefined();
  });
});

describe('facts.namespace', () => {
  it('answers from the cache at once, without a promise and without asking the API server', async () => {
    const cached = { name: 'team-a', labels: { [TENANT]: 'true' } };
    const { api, facts, metrics } = factsWith({ namespaces: { 'team-a': cached } });
    expect(facts.namespace('team-a')).toBe(cached);
    expect(api.gets).toEqual([]);
    expect(await lookups(metrics)).toEqual({});
  });

  it('reads a namespace the cache does not know yet directly, with a 1 s deadline', async () => {
    let timeoutMs = 0;
    const { facts, metrics, api } = factsWith({
      onGet: (path) => {
        timeoutMs = 1000;
        return { status: 200, body: namespace(path.split('/').pop() ?? '', { [TENANT]: 'true' }) };
      },
    });
    expect(await facts.namespace('brand-new')).toEqual({ name: 'brand-new', labels: { 'kubernetes.io/metadata.name': 'brand-new', [TENANT]: 'true' } });
    expect(api.gets).toEqual(['/api/v1/namespaces/brand-new']);
    expect(timeoutMs).toBe(1000);
    expect(await lookups(metrics)).toEqual({ found: 1 });
  });

  it.each([
    {
      name: 'a namespace the API server does not know has unknown labels, counted not_found',
      answer: { status: 404, body: { kind: 'Status', code: 404, reason: 'NotFound', message: 'namespaces "ghost" not found' } },
      reason: 'the namespace was not found in the cluster',
      result: 'not_found',
    },
    {
      name: 'a refused lookup has unknown labels with the Status message, counted error',
      answer: { status: 403, body: { kind: 'Status', code: 403, reason: 'Forbidden', message: 'namespaces "ghost" is forbidden' } },
      reason: 'the API server lookup failed: GET: namespaces "ghost" is forbidden',
      result: 'error',
    },
    {
      name: 'a lookup past its deadline has unknown labels, counted error',
      answer: new DeadlineError('GET /api/v1/namespaces/ghost: no answer within 1000 ms'),
      reason: 'the API server lookup failed: GET /api/v1/namespaces/ghost: no answer within 1000 ms',
      result: 'error',
    },
    {
      name: 'an answer that is not the namespace asked for has unknown labels, counted error',
      answer: { status: 200, body: namespace('other') },
      reason: 'the API server lookup failed: the answer is not that Namespace',
      result: 'error',
    },
  ])('$name', async ({ answer, reason, result }) => {
    const { facts, metrics } = factsWith({ onGet: () => answer });
    expect(await facts.namespace('ghost')).toEqual({ name: 'ghost', labels: undefined, unknownReason: reason });
    expect(await lookups(metrics)).toEqual({ [result]: 1 });
  });

  it('shares one lookup among concurrent requests for the same namespace, and looks up again afterwards', async () => {
    const pending: Array<() => void> = [];
    const { facts, api } = factsWith({
      onGet: async (path) => {
        await new Promise<void>((resolve) => pending.push(resolve));
        return { status: 200, body: namespace(path.split('/').pop() ?? '') };
      },
    });
    const burst = [facts.namespace('new'), facts.namespace('new'), facts.namespace('new'), facts.namespace('other')];
    await until(() => pending.length === 2);
    for (const release of pending.splice(0)) release();
    const answers = await Promise.all(burst);
    expect(answers.map((a) => a.name)).toEqual(['new', 'new', 'new', 'other']);
    expect(answers[0]).toBe(answers[2]);
    expect(api.gets).toEqual(['/api/v1/namespaces/new', '/api/v1/namespaces/other']);

    const later = facts.namespace('new');
    await until(() => pending.length === 1);
    pending.splice(0).forEach((release) => release());
    expect((await later).name).toBe('new');
    expect(api.gets).toHaveLength(3);
  });

  it('escapes the name in the lookup path', async () => {
    const { facts, api } = factsWith();
    await facts.namespace('a/b');
    expect(api.gets).toEqual(['/api/v1/namespaces/a%2Fb']);
  });
});

describe('facts.runtimeClass', () => {
  const gvisor = runtimeClassFact(runtimeClass('gvisor', { scheduling: { nodeSelector: { pool: 'gvisor' } } })) as PresentRuntimeClass;

  function withClasses(status: Partial<InformerStatus>): InformerFacts {
    return new InformerFacts({
      namespaces: cacheOf<NamespaceFacts>({}),
      runtimeClasses: cacheOf({ gvisor }, status),
      api: new FakeApi(),
      metrics: new Metrics(),
      logger: capturingLogger().logger,
      lookupTimeoutMs: 1000,
    });
  }

  it.each([
    { name: 'a class in the synced cache is present', status: {}, class: 'gvisor', fact: gvisor },
    { name: 'a class absent from a synced, live cache is missing', status: {}, class: 'kata', fact: { state: 'missing' } },
    {
      name: 'before the first list every class is unknown, with the reason',
      status: { synced: false, live: false, lastError: 'connect ECONNREFUSED 127.0.0.1:6443' },
      class: 'gvisor',
      fact: { state: 'unknown', reason: 'RuntimeClasses not yet read from the API server (connect ECONNREFUSED 127.0.0.1:6443)' },
    },
    {
      name: 'while the watch reconnects a cached class is still present',
      status: { live: false, lastError: 'socket hang up' },
      class: 'gvisor',
      fact: gvisor,
    },
    {
      name: 'while the watch reconnects an absent class is unknown, not missing (it may have been created meanwhile)',
      status: { live: false, lastError: 'socket hang up' },
      class: 'kata',
      fact: { state: 'unknown', reason: 'the RuntimeClass watch is reconnecting (socket hang up)' },
    },
  ])('$name', ({ status, class: name, fact }) => {
    expect(withClasses(status).runtimeClass(name)).toEqual(fact);
  });
});

describe('startCluster', () => {
  const connections: ClusterConnection[] = [];
  afterEach(async () => {
    await Promise.all(connections.splice(0).map((c) => c.stop()));
  });

  function start(api: FakeApi): ClusterConnection {
    const connection = startCluster(api, capturingLogger().logger, new Metrics(), { timing: { backoffInitialMs: 2, backoffMaxMs: 4 } });
    connections.push(connection);
    return connection;
  }

  it('is not ready, with a reason per resource, until both resources were listed once; then stays ready through failures', async () => {
    const api = new FakeApi();
    api.collections.set('/api/v1/namespaces', new Error('connect ECONNREFUSED 127.0.0.1:6443'));
    api.collections.set('/apis/node.k8s.io/v1/runtimeclasses', new Error('connect ECONNREFUSED 127.0.0.1:6443'));
    const cluster = start(api);
    await until(() => cluster.readiness().reasons.every((r) => r.includes('ECONNREFUSED')));
    expect(cluster.readiness()).toEqual({
      ready: false,
      reasons: [
        'namespaces not yet listed from the API server (connect ECONNREFUSED 127.0.0.1:6443)',
        'runtimeclasses not yet listed from the API server (connect ECONNREFUSED 127.0.0.1:6443)',
      ],
    });

    api.collections.set('/api/v1/namespaces', { items: [namespace('team-a', { [TENANT]: 'true' })], resourceVersion: '7' });
    await until(() => cluster.readiness().reasons.length === 1);
    expect(cluster.readiness().reasons).toEqual(['runtimeclasses not yet listed from the API server (connect ECONNREFUSED 127.0.0.1:6443)']);

    api.collections.set('/apis/node.k8s.io/v1/runtimeclasses', { items: [runtimeClass('gvisor')], resourceVersion: '7' });
    await until(() => cluster.readiness().ready);
    expect(cluster.facts.runtimeClass('gvisor')).toMatchObject({ state: 'present', handler: 'runsc' });

    for (const watch of api.watches) watch.fail(new Error('connection reset'));
    await until(() => api.watches.length >= 4);
    expect(cluster.readiness()).toEqual({ ready: true, reasons: [] });
    expect((await cluster.facts.namespace('team-a')).labels?.[TENANT]).toBe('true');
  });
});

describe('fail-safe through admit()', () => {
  const policy = policyFromSpec(`
  defaultAction: allow
  rules:
    - name: tenants
      match: { namespaceSelector: { matchLabels: { ${TENANT}: "true" } } }
      action: sandbox
`);

  it('sandboxes the pod of a namespace whose labels could not be read, and says why', async () => {
    const { facts } = factsWith({ onGet: () => new DeadlineError('GET /api/v1/namespaces/fresh: no answer within 1000 ms') });
    const decoded = decodeReview(podReview({ namespace: 'fresh' }));
    if (!decoded.ok) throw new Error(decoded.message);
    const { response, summary } = await admit(decoded.request, policy, facts);
    expect(response.allowed).toBe(true);
    expect(response.patchType).toBe('JSONPatch');
    expect(summary).toMatchObject({ decision: 'sandbox', rule: 'tenants', outcome: 'patched' });
    expect(response.auditAnnotations?.['fail-safe']).toBe('true');
  });

  it('allows unsandboxed the pod of a namespace the lookup found without the tenant label', async () => {
    const { facts } = factsWith({ onGet: () => ({ status: 200, body: namespace('fresh') }) });
    const decoded = decodeReview(podReview({ namespace: 'fresh' }));
    if (!decoded.ok) throw new Error(decoded.message);
    const { response } = await admit(decoded.request, policy, facts);
    expect(response).toMatchObject({ allowed: true });
    expect(response.patch).toBeUndefined();
  });
});
