// The running-pod audit without a cluster: each pod classified as the policy decides it today, the
// pod list read page by page, the metrics bounded to the top namespaces, and the Lease loop.

import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { ClusterFacts } from '../../src/admission/facts.js';
import { pino } from 'pino';
import { AuditMetrics, OTHER_NAMESPACES, PodTally } from '../../src/audit/metrics.js';
import { startPeriodicAudit } from '../../src/audit/periodic.js';
import { auditPod, scanPods, type PodAudit } from '../../src/audit/scan.js';
import type { KubeWriteApi } from '../../src/cluster/kube-api.js';
import { LeaderElector } from '../../src/cluster/lease.js';
import { policyFromSpec } from '../support/policy.js';
import type { Json } from '../support/review.js';

const POLICY = policyFromSpec(`
  defaultAction: allow
  acceptedRuntimeClasses: [gvisor, kata]
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
    - name: blocked-registry
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: tenants
      match: { namespaceSelector: { matchLabels: { tenant: "true" } } }
      action: sandbox
`);

const cluster: ClusterFacts = {
  namespace: (name) => ({ name, labels: name.startsWith('team-') ? { tenant: 'true' } : ({} as Record<string, string>) }),
  runtimeClass: () => ({ state: 'present', handler: 'runsc', nodeSelector: {} }),
};

function runningPod(namespace: string, name: string, spec: Json = {}): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, uid: `uid-${name}` },
    spec: { nodeName: 'node-1', containers: [{ name: 'app', image: 'nginx:1.27' }], ...spec },
    status: { phase: 'Running' },
  };
}

describe('a running pod is classified as the policy decides it today', () => {
  const cases: [string, Json, Pick<PodAudit, 'state' | 'rule' | 'reason'>][] = [
    ['a tenant pod under gvisor is sandboxed', runningPod('team-a', 'a', { runtimeClassName: 'gvisor' }), { state: 'sandboxed', rule: 'tenants', reason: 'runtimeClassName "gvisor"' }],
    ['a tenant pod under another accepted class is sandboxed', runningPod('team-a', 'b', { runtimeClassName: 'kata' }), { state: 'sandboxed', rule: 'tenants', reason: 'runtimeClassName "kata"' }],
    ['a tenant pod without a class is a violation (admitted before the webhook)', runningPod('team-a', 'c'), { state: 'violation', rule: 'tenants', reason: 'runs unsandboxed; rule "tenants" would sandbox it' }],
    ['a tenant pod under runc is a violation that would be denied', runningPod('team-a', 'd', { runtimeClassName: 'runc' }), { state: 'violation', rule: 'tenants', reason: expect.stringMatching(/^runs with runtimeClassName "runc"; would be denied: pod d denied by rule "tenants"/) as unknown as string }],
    ['a tenant pod with hostNetwork is a violation that would be denied', runningPod('team-a', 'e', { hostNetwork: true }), { state: 'violation', rule: 'tenants', reason: expect.stringContaining('spec.hostNetwork') as unknown as string }],
    ['a system pod is allowed by its rule', runningPod('kube-system', 'f'), { state: 'allowed', rule: 'system', reason: 'unsandboxed, allowed by rule "system"' }],
    ['a pod no rule matches is allowed by the default', runningPod('other', 'g', { runtimeClassName: 'runc' }), { state: 'allowed', rule: 'default', reason: 'unsandboxed (runtimeClassName "runc"), allowed by spec.defaultAction' }],
    ['a sandboxed pod whose image is now denied is a violation', runningPod('team-a', 'h', { runtimeClassName: 'gvisor', containers: [{ name: 'x', image: 'evil.example.com/x:1' }] }), { state: 'violation', rule: 'blocked-registry', reason: 'would be denied by rule "blocked-registry"' }],
    ['a pod whose spec is malformed is a violation that says why', { metadata: { name: 'i', namespace: 'team-a' }, spec: { hostNetwork: 'yes' } }, { state: 'violation', rule: '-', reason: 'cannot be judged: request.object is not a valid Pod: spec.hostNetwork: expected a boolean' }],
  ];
  for (const [name, pod, expected] of cases) {
    it(name, async () => {
      expect(await auditPod(pod, POLICY, cluster)).toMatchObject(expected);
    });
  }

  it('audit mode policies are judged as enforcement would judge them', async () => {
    const audit = policyFromSpec(`
  mode: audit
  rules:
    - name: tenants
      match: { namespaceSelector: { matchLabels: { tenant: "true" } } }
      action: sandbox
`);
    expect(await auditPod(runningPod('team-a', 'x', { hostPID: true }), audit, cluster)).toMatchObject({ state: 'violation', reason: expect.stringContaining('would be denied') as unknown as string });
  });
});

/** A fake API server holding `count` pods, answering list pages by `limit` and `continue`. */
function fakePods(count: number): { api: { get: (path: string) => Promise<{ status: number; body: unknown }> }; paths: string[] } {
  const paths: string[] = [];
  const pods = Array.from({ length: count }, (_, i) => runningPod(i % 3 === 0 ? 'kube-system' : `team-${i % 5}`, `p-${i}`));
  return {
    paths,
    api: {
      get: (path: string) => {
        paths.push(path);
        const query = new URL(path, 'https://x').searchParams;
        const limit = Number(query.get('limit'));
        const start = Number(query.get('continue') ?? '0');
        const items = pods.slice(start, start + limit);
        const next = start + limit < pods.length ? String(start + limit) : undefined;
        return Promise.resolve({ status: 200, body: { kind: 'PodList', metadata: next ? { continue: next } : {}, items } });
      },
    },
  };
}

describe('a scan reads the pods page by page', () => {
  it('asks for pages of the given size, follows continue, and skips pods that ended', async () => {
    const { api, paths } = fakePods(1201);
    const seen: PodAudit[] = [];
    const stats = await scanPods({ api, policy: POLICY, cluster, pageSize: 500, onPod: (audit) => seen.push(audit) });
    expect(stats).toMatchObject({ pods: 1201, requests: 3 });
    expect(seen).toHaveLength(1201);
    expect(paths).toEqual([
      '/api/v1/pods?limit=500&fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed',
      '/api/v1/pods?limit=500&fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed&continue=500',
      '/api/v1/pods?limit=500&fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed&continue=1000',
    ]);
  });

  it('fails with the API server message when a page is refused (an expired continue token)', async () => {
    const api = { get: () => Promise.resolve({ status: 410, body: { kind: 'Status', reason: 'Expired', message: 'The provided continue parameter is too old' } }) };
    await expect(scanPods({ api, policy: POLICY, cluster, onPod: () => undefined })).rejects.toThrow('list /api/v1/pods: The provided continue parameter is too old');
  });
});

describe('the pods metric is bounded', () => {
  const audit = (namespace: string, state: PodAudit['state'], rule = 'tenants'): PodAudit => ({ namespace, name: 'x', state, rule, runtimeClassName: undefined, reason: '' });

  it('names the namespaces with the most violations, then the most pods, and sums the rest under _other', () => {
    const tally = new PodTally();
    for (let i = 0; i < 5; i++) tally.add(audit('big', 'sandboxed'));
    tally.add(audit('bad', 'violation'));
    for (let i = 0; i < 3; i++) tally.add(audit('mid', 'sandboxed'));
    tally.add(audit('small', 'sandboxed'));
    tally.add(audit('small', 'allowed', 'system'));
    expect(tally.series(2).sort((a, b) => a.namespace.localeCompare(b.namespace) || a.state.localeCompare(b.state))).toEqual([
      { namespace: OTHER_NAMESPACES, state: 'allowed', rule: 'system', pods: 1 },
      { namespace: OTHER_NAMESPACES, state: 'sandboxed', rule: 'tenants', pods: 4 },
      { namespace: 'bad', state: 'violation', rule: 'tenants', pods: 1 },
      { namespace: 'big', state: 'sandboxed', rule: 'tenants', pods: 5 },
    ]);
  });

  it('publishes a complete scan and clears it when leadership is lost', async () => {
    const registry = new Registry();
    let now = 1_000_000;
    const metrics = new AuditMetrics(registry, 50, () => now);
    expect(await registry.getSingleMetricAsString('sandbox_webhook_audit_last_complete_scan_age_seconds')).toContain(' +Inf');
    const tally = new PodTally();
    tally.add(audit('team-a', 'violation'));
    metrics.leading(true);
    metrics.completed(tally, { pods: 1, requests: 1, durationMs: 250 });
    now += 5000;
    const text = await registry.metrics();
    expect(text).toContain('sandbox_webhook_pods{namespace="team-a",state="violation",rule="tenants"} 1');
    expect(text).toContain('sandbox_webhook_audit_scan_duration_seconds 0.25');
    expect(text).toContain('sandbox_webhook_audit_last_complete_scan_age_seconds 5');
    expect(text).toContain('sandbox_webhook_audit_leader 1');
    metrics.leading(false);
    expect(await registry.metrics()).not.toContain('sandbox_webhook_pods{');
  });
});

describe('the periodic audit', () => {
  it('scans only as leader, once the namespace cache is filled, and publishes the complete scan', async () => {
    const { api, paths } = fakePods(12);
    const registry = new Registry();
    let leader = false;
    let ready = false;
    const audit = startPeriodicAudit({
      api,
      policy: () => POLICY,
      cluster,
      intervalMs: 3_600_000,
      isLeader: () => leader,
      ready: () => ready,
      metrics: new AuditMetrics(registry),
      logger: pino({ level: 'silent' }),
    });
    try {
      await audit.scanNow();
      leader = true;
      await audit.scanNow();
      expect(paths).toEqual([]);
      ready = true;
      await audit.scanNow();
      expect(paths).toHaveLength(1);
      expect(await registry.getSingleMetricAsString('sandbox_webhook_audit_scan_pods')).toContain('sandbox_webhook_audit_scan_pods 12');
      expect(await registry.getSingleMetricAsString('sandbox_webhook_pods')).toContain('sandbox_webhook_pods{namespace="kube-system",state="allowed",rule="system"} 4');
    } finally {
      await audit.stop();
    }
  });
});

/** A Lease store with resourceVersion checks, as the API server keeps one. */
function fakeLeases(): { api: KubeWriteApi; lease: () => Json | undefined; down: (value: boolean) => void } {
  let stored: Json | undefined;
  let version = 0;
  let unavailable = false;
  const api: KubeWriteApi = {
    get: () => {
      if (unavailable) return Promise.reject(new Error('connection refused'));
      return Promise.resolve(stored ? { status: 200, body: structuredClone(stored) } : { status: 404, body: { kind: 'Status' } });
    },
    sendJson: (method, _path, body) => {
      if (unavailable) return Promise.reject(new Error('connection refused'));
      const object = structuredClone(body) as Json;
      const metadata = (object.metadata ?? {}) as Json;
      if (method === 'POST') {
        if (stored) return Promise.resolve({ status: 409, body: {} });
      } else if (!stored || metadata.resourceVersion !== (stored.metadata as Json).resourceVersion) {
        return Promise.resolve({ status: 409, body: {} });
      }
      version += 1;
      stored = { ...object, metadata: { ...metadata, resourceVersion: String(version) } };
      return Promise.resolve({ status: method === 'POST' ? 201 : 200, body: stored });
    },
  };
  return { api, lease: () => stored, down: (value) => (unavailable = value) };
}

describe('leader election on a Lease', () => {
  it('one of two replicas leads; the other takes over only once the lease expired on its own clock', async () => {
    const { api, lease } = fakeLeases();
    let now = 0;
    const a = new LeaderElector({ api, namespace: 'sw', name: 'audit', identity: 'a', now: () => now });
    const b = new LeaderElector({ api, namespace: 'sw', name: 'audit', identity: 'b', now: () => now });
    await a.tryOnce();
    await b.tryOnce();
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    expect((lease()?.spec as Json).holderIdentity).toBe('a');
    now += 14_000;
    await b.tryOnce();
    expect(b.isLeader()).toBe(false);
    now += 2_000; // 16 s since b first saw this record, and a never renewed: expired
    await b.tryOnce();
    expect(b.isLeader()).toBe(true);
    expect((lease()?.spec as Json).leaseTransitions).toBe(1);
    await a.tryOnce();
    expect(a.isLeader()).toBe(false);
  });

  it('a leader that renews keeps the Lease; one that cannot reach the API server stops leading after the renew deadline', async () => {
    const { api, down } = fakeLeases();
    let now = 0;
    const changes: boolean[] = [];
    const a = new LeaderElector({ api, namespace: 'sw', name: 'audit', identity: 'a', now: () => now, onChange: (leading) => changes.push(leading) });
    const b = new LeaderElector({ api, namespace: 'sw', name: 'audit', identity: 'b', now: () => now });
    await a.tryOnce();
    for (let i = 0; i < 10; i++) {
      now += 2_000;
      await a.tryOnce();
      await b.tryOnce();
    }
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);
    down(true);
    now += 8_000;
    await a.tryOnce();
    expect(a.isLeader()).toBe(true);
    now += 3_000;
    await a.tryOnce();
    expect(a.isLeader()).toBe(false);
    expect(changes).toEqual([true, false]);
  });

  it('stop() gives the Lease up, so a successor need not wait out its duration', async () => {
    const { api } = fakeLeases();
    const now = 0;
    const a = new LeaderElector({ api, namespace: 'sw', name: 'audit', identity: 'a', now: () => now });
    const b = new LeaderElector({ api, namespace: 'sw', name: 'audit', identity: 'b', now: () => now });
    await a.tryOnce();
    await a.stop();
    await b.tryOnce();
    expect(b.isLeader()).toBe(true);
  });
});
