// Workload kinds judged by their pod template, through admit(): the dispatch, the template's pod
// decided as its controller's pods will be, warnings naming the fact first, early denial, no patch.

import { describe, expect, it } from 'vitest';
import { admit } from '../../src/admission/admit.js';
import type { ClusterFacts } from '../../src/admission/facts.js';
import { decodeReview, type AdmissionRequest, type AdmissionResponse } from '../../src/admission/review.js';
import { judgeWorkload, podFromTemplate, WORKLOAD_KINDS, type WorkloadKind } from '../../src/admission/workloads.js';
import type { Policy } from '../../src/policy/policy.js';
import { policyFromSpec } from '../support/policy.js';
import { fixture, HAVE_SHARED_FIXTURES, SHARED_FIXTURES, type Json } from '../support/review.js';

const RULES = `
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
    - name: blocked-registry
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: tenants
      match: { namespaceSelector: { matchLabels: { sandbox-webhook.io/tenant: "true" } } }
      action: sandbox
`;
const WARN = policyFromSpec(`  defaultAction: allow${RULES}`);
const DENY = policyFromSpec(`  defaultAction: allow\n  workloads: deny${RULES}`);
const TENANTS_ONLY = policyFromSpec(`
  defaultAction: allow
  rules:
    - name: tenants
      match: { namespaceSelector: { matchLabels: { sandbox-webhook.io/tenant: "true" } } }
      action: sandbox
`);
const AUDIT_DENY = policyFromSpec(`  defaultAction: allow\n  mode: audit\n  workloads: deny${RULES}`);

const TENANT = 'team-a';
const cluster: ClusterFacts = {
  namespace: (name) => ({ name, labels: name === TENANT ? { 'sandbox-webhook.io/tenant': 'true' } : ({} as Record<string, string>) }),
  runtimeClass: () => ({ state: 'present', handler: 'runsc', nodeSelector: {} }),
};

function podSpec(extra: Json = {}): Json {
  return { containers: [{ name: 'app', image: 'registry.example.com/app:1.0' }], ...extra };
}

/** A realistic object of `kind` whose pod template has `spec`. */
function workload(kind: WorkloadKind, spec: Json, name = 'web'): Json {
  const template = { metadata: { labels: { app: name } }, spec };
  let body: Json;
  if (kind.kind === 'PodTemplate') body = { template };
  else if (kind.kind === 'CronJob') body = { spec: { schedule: '*/5 * * * *', jobTemplate: { spec: { template } } } };
  else body = { spec: { selector: { matchLabels: { app: name } }, template } };
  const apiVersion = kind.group === '' ? 'v1' : `${kind.group}/v1`;
  return { apiVersion, kind: kind.kind, metadata: { name, namespace: TENANT }, ...body };
}

function request(kind: WorkloadKind, object: Json, options: { operation?: string; namespace?: string; subResource?: string; oldObject?: Json } = {}): AdmissionRequest {
  const decoded = decodeReview({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'a1b2c3d4-0000-4000-8000-000000000001',
      kind: { group: kind.group, version: 'v1', kind: kind.kind },
      resource: { group: kind.group, version: 'v1', resource: kind.resource },
      ...(options.subResource ? { subResource: options.subResource } : {}),
      name: (object.metadata as Json).name,
      namespace: options.namespace ?? TENANT,
      operation: options.operation ?? 'CREATE',
      userInfo: { username: 'alice', groups: ['system:authenticated'] },
      object,
    },
  });
  if (!decoded.ok) throw new Error(decoded.message);
  // The apiserver sends oldObject with an UPDATE; it is read where the request carries it.
  return options.oldObject === undefined ? decoded.request : { ...decoded.request, oldObject: options.oldObject } as AdmissionRequest;
}

async function run(kind: WorkloadKind, object: Json, policy: Policy, options: Parameters<typeof request>[2] = {}): Promise<AdmissionResponse> {
  return (await admit(request(kind, object, options), policy, cluster)).response;
}

const prefix = (kind: WorkloadKind): string => `${kind.templatePath.join('.')}.`;

describe('every workload kind is judged by its pod template', () => {
  for (const kind of WORKLOAD_KINDS) {
    it(`a ${kind.kind} whose pods would be sandboxed is admitted untouched, with no warning`, async () => {
      const response = await run(kind, workload(kind, podSpec()), WARN);
      expect(response).toEqual({
        uid: 'a1b2c3d4-0000-4000-8000-000000000001',
        allowed: true,
        auditAnnotations: { decision: 'sandbox', rule: 'tenants', outcome: 'unchanged', mode: 'enforce' },
      });
    });

    it(`a ${kind.kind} with hostNetwork in a tenant namespace is admitted with a warning naming the field first`, async () => {
      const response = await run(kind, workload(kind, podSpec({ hostNetwork: true })), WARN);
      expect(response.allowed).toBe(true);
      expect(response.patch).toBeUndefined();
      expect(response.warnings).toEqual([`sandbox-webhook: ${prefix(kind)}spec.hostNetwork: its pods would be denied by rule "tenants"`]);
      expect(response.auditAnnotations).toEqual({ decision: 'sandbox', rule: 'tenants', outcome: 'warned', mode: 'enforce' });
    });

    it(`a ${kind.kind} with hostNetwork is rejected early under workloads: deny`, async () => {
      const response = await run(kind, workload(kind, podSpec({ hostNetwork: true })), DENY);
      expect(response.allowed).toBe(false);
      expect(response.status?.code).toBe(403);
      expect(response.status?.message).toMatch(new RegExp(`^sandbox-webhook: ${kind.kind} web denied \\(spec.workloads: deny\\): its pods would be denied: pod web-\\* denied by rule "tenants"`));
      expect(response.status?.message).toContain('spec.hostNetwork');
      expect(response.auditAnnotations?.outcome).toBe('denied');
    });
  }
});

describe.skipIf(!HAVE_SHARED_FIXTURES)('upstream objects with every field set', () => {
  const files: Record<string, string> = {
    Deployment: 'apps.v1.Deployment.json',
    StatefulSet: 'apps.v1.StatefulSet.json',
    DaemonSet: 'apps.v1.DaemonSet.json',
    ReplicaSet: 'apps.v1.ReplicaSet.json',
    Job: 'batch.v1.Job.json',
    CronJob: 'batch.v1.CronJob.json',
    PodTemplate: 'core.v1.PodTemplate.json',
  };
  for (const kind of WORKLOAD_KINDS.filter((k) => files[k.kind])) {
    it(`${files[kind.kind]}: every incompatible field of its template is named, under the template's path`, async () => {
      const response = await run(kind, fixture(`${SHARED_FIXTURES}${files[kind.kind]}`), TENANTS_ONLY);
      expect(response.allowed).toBe(true);
      const warnings = response.warnings ?? [];
      expect(warnings[0]).toBe(`sandbox-webhook: ${prefix(kind)}spec.hostNetwork: its pods would be denied by rule "tenants"`);
      expect(warnings.some((w) => w.startsWith(`sandbox-webhook: ${prefix(kind)}spec.hostPID:`))).toBe(true);
      for (const warning of warnings) expect(warning.length).toBeLessThan(120);
      expect(response.patch).toBeUndefined();
    });
  }
});

describe('what the warning names', () => {
  const deployment = WORKLOAD_KINDS.find((k) => k.kind === 'Deployment') as WorkloadKind;

  it('an image denied by a rule is named first, with its field', async () => {
    const spec = podSpec({ containers: [{ name: 'a', image: 'nginx' }, { name: 'b', image: 'evil.example.com/miner:1' }] });
    const response = await run(deployment, workload(deployment, spec), WARN);
    // Past 120 characters the end is cut, never the fact.
    expect(response.warnings).toEqual([
      'sandbox-webhook: spec.template.spec.containers[1].image "evil.example.com/miner:1": its pods would be denied by rule...',
    ]);
  });

  it('an image that cannot be parsed is named when it made an image rule decide fail-safe', async () => {
    const response = await run(deployment, workload(deployment, podSpec({ containers: [{ name: 'a', image: 'Not An Image' }] })), WARN);
    expect(response.warnings).toEqual(['sandbox-webhook: spec.template.spec.containers[0].image "Not An Image" (unparsable): its pods would be denied by rul...']);
  });

  it('a runtimeClassName outside the accepted classes is named with its value', async () => {
    const response = await run(deployment, workload(deployment, podSpec({ runtimeClassName: 'runc' })), WARN);
    expect(response.warnings).toEqual(['sandbox-webhook: spec.template.spec.runtimeClassName "runc": its pods would be denied by rule "tenants"']);
  });

  it('a RuntimeClass missing in the cluster is named, so the tenant knows it is not their template', async () => {
    const missing: ClusterFacts = { ...cluster, runtimeClass: () => ({ state: 'missing' }) };
    const response = (await admit(request(deployment, workload(deployment, podSpec())), WARN, missing)).response;
    expect(response.warnings).toEqual(['sandbox-webhook: RuntimeClass "gvisor" does not exist: its pods would be denied by rule "tenants"']);
  });

  it('a long workload name is shortened in the denial, and kept out of the warnings', async () => {
    const name = `web-${'x'.repeat(240)}`;
    const response = await run(deployment, workload(deployment, podSpec({ hostPID: true, hostIPC: true }), name), DENY);
    expect(response.warnings).toEqual([
      'sandbox-webhook: spec.template.spec.hostPID: its pods would be denied by rule "tenants"',
      'sandbox-webhook: spec.template.spec.hostIPC: its pods would be denied by rule "tenants"',
    ]);
    expect(response.status?.message).toMatch(/^sandbox-webhook: Deployment web-x{33}\.\.\. denied/);
  });

  it('more than five facts end in "and N more"', async () => {
    const volumes = Array.from({ length: 6 }, (_, i) => ({ name: `v${i}`, hostPath: { path: `/v${i}` } }));
    const response = await run(deployment, workload(deployment, podSpec({ volumes })), WARN);
    expect(response.warnings).toHaveLength(6);
    expect(response.warnings?.[5]).toBe('sandbox-webhook: and 1 more reasons its pods would be denied');
  });

  it('a namespace the policy allows gets nothing, even with hostNetwork', async () => {
    const response = await run(deployment, { ...workload(deployment, podSpec({ hostNetwork: true })), metadata: { name: 'web' } }, WARN, { namespace: 'kube-system' });
    expect(response.warnings).toBeUndefined();
    expect(response.auditAnnotations?.rule).toBe('system');
  });
});

describe('operations, modes and broken templates', () => {
  const deployment = WORKLOAD_KINDS.find((k) => k.kind === 'Deployment') as WorkloadKind;
  const bad = workload(deployment, podSpec({ hostNetwork: true }));
  const good = workload(deployment, podSpec());

  const cases: [string, Parameters<typeof request>[2], Policy, boolean, string | undefined][] = [
    ['an UPDATE that introduces hostNetwork is denied under workloads: deny', { operation: 'UPDATE', oldObject: good }, DENY, false, 'denied'],
    ['an UPDATE that leaves a bad template as it was is only warned about (a controller may be scaling it down)', { operation: 'UPDATE', oldObject: bad }, DENY, true, 'warned'],
    ['an UPDATE without oldObject cannot be compared and is only warned about', { operation: 'UPDATE' }, DENY, true, 'warned'],
    ['audit mode never rejects a workload, even under workloads: deny', {}, AUDIT_DENY, true, 'warned'],
    ['a DELETE is not judged', { operation: 'DELETE' }, DENY, true, undefined],
    ['the scale subresource is not judged', { operation: 'UPDATE', subResource: 'scale' }, DENY, true, undefined],
  ];
  for (const [name, options, policy, allowed, outcome] of cases) {
    it(name, async () => {
      const response = await run(deployment, bad, policy, options);
      expect(response.allowed).toBe(allowed);
      expect(response.auditAnnotations?.outcome).toBe(outcome);
      expect(response.patch).toBeUndefined();
    });
  }

  it('a template that is not an object is rejected with its path', async () => {
    const response = await run(deployment, { ...good, spec: { template: 'oops' } }, WARN);
    expect(response.allowed).toBe(false);
    expect(response.status).toEqual({ code: 400, message: 'sandbox-webhook: Deployment web: the pod template is not a valid pod template: spec.template: expected an object' });
  });

  it('a template whose spec has a wrong type is rejected with the field under the template', async () => {
    const response = await run(deployment, workload(deployment, podSpec({ hostNetwork: 'yes' })), WARN);
    expect(response.status?.message).toBe('sandbox-webhook: Deployment web: the pod template is not a valid pod template: spec.template.spec.hostNetwork: expected a boolean');
  });
});

describe('the pod its controller would create', () => {
  it('takes the template labels, annotations and spec, the namespace, and generateName from the workload', () => {
    const template = { metadata: { name: 'ignored', labels: { app: 'web' }, annotations: { a: 'b' } }, spec: podSpec() };
    expect(podFromTemplate(template, 'web', TENANT)).toEqual({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'web-', namespace: TENANT, labels: { app: 'web' }, annotations: { a: 'b' } },
      spec: podSpec(),
    });
  });

  it('is decided with the namespace labels of the workload, so selectors work as for its pods', async () => {
    const cronJob = WORKLOAD_KINDS.find((k) => k.kind === 'CronJob') as WorkloadKind;
    const judged = await judgeWorkload(request(cronJob, workload(cronJob, podSpec()), { namespace: 'other' }), WARN, cluster);
    expect(judged.pod?.result.summary.rule).toBe('default');
    const tenant = await judgeWorkload(request(cronJob, workload(cronJob, podSpec())), WARN, cluster);
    expect(tenant.pod?.result.summary.rule).toBe('tenants');
    expect(tenant.pod?.result.response.patch).toBeDefined();
  });
});
