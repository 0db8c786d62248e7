// The decision table of docs/design.md, row by row, through admit(): the whole admission core
// (policy engine, verdict, patch, warnings, audit annotations) without HTTP.

import fastJsonPatch from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { admit, RULE_ANNOTATION } from '../../src/admission/admit.js';
import { offlineFacts, type ClusterFacts } from '../../src/admission/facts.js';
import { decodeReview, type AdmissionRequest, type AdmissionResponse } from '../../src/admission/review.js';
import type { RuntimeClassFact } from '../../src/policy/evaluate.js';
import type { Policy } from '../../src/policy/policy.js';
import { policyFromSpec } from '../support/policy.js';
import { decodePatch, pod, podReview, type Json } from '../support/review.js';

const { applyPatch, deepClone } = fastJsonPatch;

const TENANT_POLICY = policyFromSpec(`
  defaultAction: sandbox
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
    - name: blocked-registry
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: platform-images
      match: { namespaces: ["platform-*"], allImages: ["registry.example.com/platform/**"] }
      action: allow
    - name: tenants
      match: { namespaceSelector: { matchLabels: { sandbox-webhook.io/tenant: "true" } } }
      action: sandbox
    - name: kata-tier
      match: { namespaces: [secure-*] }
      action: sandbox
      runtimeClassName: kata
`);

function facts(options: { labels?: Record<string, Record<string, string>>; classes?: Record<string, RuntimeClassFact> } = {}): ClusterFacts {
  return {
    namespace: (name) =>
      Promise.resolve(
        options.labels && options.labels[name]
          ? { name, labels: options.labels[name] }
          : { name, labels: undefined, unknownReason: 'test: unknown' },
      ),
    runtimeClass: (name) => options.classes?.[name] ?? { state: 'unknown', reason: 'test' },
  };
}

function request(review: Json): AdmissionRequest {
  const decoded = decodeReview(review);
  if (!decoded.ok) throw new Error(decoded.message);
  return decoded.request;
}

async function run(review: Json, policy: Policy = TENANT_POLICY, cluster: ClusterFacts = offlineFacts): Promise<AdmissionResponse> {
  return (await admit(request(review), policy, cluster)).response;
}

function patched(review: Json, response: AdmissionResponse): Json {
  const original = deepClone((review.request as Json).object) as Json;
  const ops = decodePatch(response as unknown as Json) ?? [];
  return applyPatch(original, ops as fastJsonPatch.Operation[], true, false).newDocument as Json;
}

const GVISOR: RuntimeClassFact = { state: 'present', handler: 'runsc', nodeSelector: { 'sandbox.gvisor.dev/runtime': 'gvisor' } };

describe('decision table (enforce mode)', () => {
  it('sandbox + no runtimeClassName: allowed with a patch that sets it and the rule annotation', async () => {
    const review = podReview({ namespace: 'team-a' });
    const response = await run(review, TENANT_POLICY, facts({ labels: { 'team-a': { 'sandbox-webhook.io/tenant': 'true' } } }));
    expect(response.allowed).toBe(true);
    expect(response.patchType).toBe('JSONPatch');
    expect(decodePatch(response as unknown as Json)).toEqual([
      { op: 'add', path: '/spec/runtimeClassName', value: 'gvisor' },
      { op: 'add', path: '/metadata/annotations', value: { [RULE_ANNOTATION]: 'tenants' } },
    ]);
    const result = patched(review, response);
    expect((result.spec as Json).runtimeClassName).toBe('gvisor');
    expect(response.auditAnnotations).toEqual({ decision: 'sandbox', rule: 'tenants', outcome: 'patched', mode: 'enforce' });
    expect(response.warnings).toEqual(['runtimeClassName "gvisor" set by rule "tenants"']);
  });

  it('the warning names the rule and class that decided, review after review', async () => {
    // Headlines are put in words once per rule and class: reviews decided by other rules, other
    // classes and the default in between must not change what a review's warning says.
    const tenantsOnKata = policyFromSpec(`
  rules:
    - name: tenants
      match: { namespaces: [team-*] }
      action: sandbox
      runtimeClassName: kata
`);
    const labels = { 'team-a': { 'sandbox-webhook.io/tenant': 'true' }, 'secure-a': {}, other: {} };
    const cases: [string, Json, Policy, string][] = [
      ['rule tenants, gvisor', podReview({ namespace: 'team-a' }), TENANT_POLICY, 'runtimeClassName "gvisor" set by rule "tenants"'],
      ['rule kata-tier, kata', podReview({ namespace: 'secure-a' }), TENANT_POLICY, 'runtimeClassName "kata" set by rule "kata-tier"'],
      ['the default action', podReview({ namespace: 'other' }), TENANT_POLICY, 'runtimeClassName "gvisor" set by spec.defaultAction'],
      ['rule tenants of another policy, kata', podReview({ namespace: 'team-a' }), tenantsOnKata, 'runtimeClassName "kata" set by rule "tenants"'],
    ];
    for (let round = 0; round < 2; round++) {
      for (const [name, review, policy, warning] of cases) {
        const response = await run(review, policy, facts({ labels }));
        expect(response.warnings, name).toEqual([warning]);
      }
    }
  });

  it('sandbox + existing annotations: adds one member, escaped, and keeps the others', async () => {
    const review = podReview({ pod: pod({}, { annotations: { 'team/owner': 'alice' } }) });
    const response = await run(review);
    expect(decodePatch(response as unknown as Json)).toEqual([
      { op: 'add', path: '/spec/runtimeClassName', value: 'gvisor' },
      { op: 'add', path: '/metadata/annotations/sandbox-webhook.io~1rule', value: 'tenants' },
    ]);
    expect((patched(review, response).metadata as Json).annotations).toEqual({ 'team/owner': 'alice', [RULE_ANNOTATION]: 'tenants' });
  });

  it('sandbox is idempotent: the patched pod, reviewed again, gets no patch', async () => {
    const review = podReview();
    const first = await run(review);
    const again = podReview({ pod: patched(review, first) });
    const second = await run(again);
    expect(second.allowed).toBe(true);
    expect(second.patch).toBeUndefined();
    expect(second.warnings).toBeUndefined();
    expect(second.auditAnnotations?.outcome).toBe('unchanged');
  });

  it('sandbox + a class in acceptedRuntimeClasses: allowed, no patch', async () => {
    const response = await run(podReview({ pod: pod({ runtimeClassName: 'gvisor' }) }));
    expect(response).toMatchObject({ allowed: true });
    expect(response.patch).toBeUndefined();
  });

  it('sandbox + another class with onConflict deny: 403 naming the class', async () => {
    const response = await run(podReview({ pod: pod({ runtimeClassName: 'runc' }) }));
    expect(response.allowed).toBe(false);
    expect(response.status?.code).toBe(403);
    expect(response.status?.message).toContain('runtimeClassName "runc"');
    expect(response.status?.message).toContain('rule "tenants"');
    expect(response.warnings?.[0]).toMatch(/denied/);
  });

  it('sandbox + another class with onConflict override: the class is replaced', async () => {
    const policy = policyFromSpec('  onConflict: override\n');
    const review = podReview({ pod: pod({ runtimeClassName: 'runc' }) });
    const response = await run(review, policy);
    expect(response.allowed).toBe(true);
    expect(decodePatch(response as unknown as Json)).toContainEqual({ op: 'replace', path: '/spec/runtimeClassName', value: 'gvisor' });
    expect(response.warnings).toEqual(['class "runc" replaced by "gvisor" (spec.defaultAction)']);
  });

  it('sandbox + hostNetwork, hostPID, hostIPC, hostPath and privileged: 403 naming each field', async () => {
    const bad = pod({
      hostNetwork: true,
      hostPID: true,
      hostIPC: true,
      volumes: [{ name: 'root', hostPath: { path: '/' } }],
      initContainers: [{ name: 'init', image: 'busybox', securityContext: { privileged: true } }],
      ephemeralContainers: [{ name: 'debug', image: 'busybox', securityContext: { privileged: true } }],
    });
    const response = await run(podReview({ pod: bad }));
    expect(response.allowed).toBe(false);
    for (const field of [
      'spec.hostNetwork',
      'spec.hostPID',
      'spec.hostIPC',
      'spec.volumes[0].hostPath (volume "root")',
      'spec.initContainers[0].securityContext.privileged (container "init")',
      'spec.ephemeralContainers[0].securityContext.privileged (container "debug")',
    ]) {
      expect(response.status?.message).toContain(field);
    }
  });

  it('sandbox + incompatible fields with incompatible warn: patched, with a warning', async () => {
    const policy = policyFromSpec('  incompatible: warn\n');
    const response = await run(podReview({ pod: pod({ hostNetwork: true }) }), policy);
    expect(response.allowed).toBe(true);
    expect(response.patch).toBeDefined();
    expect(response.warnings?.some((w) => w.includes('spec.hostNetwork'))).toBe(true);
  });

  it('sandbox + the RuntimeClass missing in the cluster: 403 that says so', async () => {
    const response = await run(podReview(), TENANT_POLICY, facts({ classes: { gvisor: { state: 'missing' } } }));
    expect(response.allowed).toBe(false);
    expect(response.status?.message).toContain('RuntimeClass "gvisor" does not exist in the cluster');
  });

  it('sandbox + a RuntimeClass without scheduling: patched, with a warning', async () => {
    const cluster = facts({ classes: { gvisor: { state: 'present', handler: 'runsc', nodeSelector: undefined } } });
    const response = await run(podReview(), TENANT_POLICY, cluster);
    expect(response.allowed).toBe(true);
    expect(response.warnings).toContain('RuntimeClass "gvisor" has no scheduling; nodes may lack "runsc"');
  });

  it('sandbox + a nodeSelector that conflicts with the RuntimeClass: 403 naming both values', async () => {
    const cluster = facts({ classes: { gvisor: GVISOR } });
    const response = await run(podReview({ pod: pod({ nodeSelector: { 'sandbox.gvisor.dev/runtime': 'none' } }) }), TENANT_POLICY, cluster);
    expect(response.allowed).toBe(false);
    expect(response.status?.message).toContain('sandbox.gvisor.dev/runtime=none');
    expect(response.status?.message).toContain('sandbox.gvisor.dev/runtime=gvisor');
  });

  it('with unknown labels, an earlier sandbox rule that may match keeps its class over a later one', async () => {
    const response = await run(podReview({ namespace: 'secure-1' }));
    expect(decodePatch(response as unknown as Json)).toContainEqual({ op: 'add', path: '/spec/runtimeClassName', value: 'gvisor' });
    expect(response.auditAnnotations).toMatchObject({ rule: 'tenants', 'fail-safe': 'true' });
  });

  it('sandbox by a rule with its own class injects that class', async () => {
    const response = await run(podReview({ namespace: 'secure-1' }), TENANT_POLICY, facts({ labels: { 'secure-1': {} } }));
    expect(decodePatch(response as unknown as Json)).toContainEqual({ op: 'add', path: '/spec/runtimeClassName', value: 'kata' });
  });

  it('allow: allowed, no patch, no warning, audit annotations only', async () => {
    const response = await run(podReview({ namespace: 'kube-system' }));
    expect(response).toEqual({
      uid: 'b0f4a7c2-1111-4c3e-9d2a-5e6f7a8b9c0d',
      allowed: true,
      auditAnnotations: { decision: 'allow', rule: 'system', outcome: 'unchanged', mode: 'enforce' },
    });
  });

  it('allow needs every image to match allImages: one foreign image sends the pod to the sandbox', async () => {
    const trusted = pod({ containers: [{ name: 'a', image: 'registry.example.com/platform/api:1' }] });
    expect((await run(podReview({ namespace: 'platform-core', pod: trusted }))).auditAnnotations?.rule).toBe('platform-images');
    const mixed = pod({
      containers: [{ name: 'a', image: 'registry.example.com/platform/api:1' }],
      initContainers: [{ name: 'b', image: 'registry.example.com/platform-evil/x' }],
    });
    expect((await run(podReview({ namespace: 'platform-core', pod: mixed }))).auditAnnotations?.decision).toBe('sandbox');
  });

  it('deny: 403 naming the rule and the offending image, also in an ephemeral container', async () => {
    const response = await run(
      podReview({ pod: pod({ ephemeralContainers: [{ name: 'dbg', image: 'EVIL.example.com/tools/shell' }] }) }),
    );
    expect(response.allowed).toBe(false);
    expect(response.status?.code).toBe(403);
    expect(response.status?.message).toContain('denied by rule "blocked-registry"');
    expect(response.status?.message).toContain('image "evil.example.com/tools/shell:latest" (spec.ephemeralContainers[0].image)');
  });
});

describe('fail-safe decisions', () => {
  it('unknown namespace labels: a sandbox rule that might match wins over a default allow', async () => {
    const policy = policyFromSpec(`
  defaultAction: allow
  rules:
    - name: tenants
      match: { namespaceSelector: { matchLabels: { tenant: "true" } } }
      action: sandbox
`);
    const unknown = await run(podReview(), policy, facts());
    expect(unknown.allowed).toBe(true);
    expect(unknown.patch).toBeDefined();
    expect(unknown.auditAnnotations?.['fail-safe']).toBe('true');
    const known = await run(podReview(), policy, facts({ labels: { 'team-a': {} } }));
    expect(known.patch).toBeUndefined();
  });

  it('unknown namespace labels: an allow rule keyed on labels does not let the pod out of the sandbox', async () => {
    const policy = policyFromSpec(`
  defaultAction: sandbox
  rules:
    - name: trusted
      match: { namespaceSelector: { matchLabels: { trusted: "true" } } }
      action: allow
`);
    const response = await run(podReview(), policy, facts());
    expect(response.auditAnnotations?.decision).toBe('sandbox');
    const known = await run(podReview(), policy, facts({ labels: { 'team-a': { trusted: 'true' } } }));
    expect(known.auditAnnotations?.decision).toBe('allow');
  });

  it('an image that cannot be parsed does not satisfy an allImages allow rule', async () => {
    const policy = policyFromSpec(`
  defaultAction: sandbox
  rules:
    - name: trusted
      match: { allImages: ["**"] }
      action: allow
`);
    const response = await run(podReview({ pod: pod({ containers: [{ name: 'a', image: 'Bad//Image' }] }) }), policy);
    expect(response.auditAnnotations?.decision).toBe('sandbox');
  });
});

describe('audit mode', () => {
  const audit = policyFromSpec(`
  mode: audit
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
    - name: blocked
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
`);

  it('a pod to be sandboxed is allowed unpatched with a warning saying what enforcement would do', async () => {
    const response = await run(podReview(), audit);
    expect(response.allowed).toBe(true);
    expect(response.patch).toBeUndefined();
    expect(response.warnings?.[0]).toBe('audit: runtimeClassName "gvisor" set by spec.defaultAction');
    expect(response.auditAnnotations).toMatchObject({ decision: 'sandbox', outcome: 'audited', mode: 'audit' });
  });

  it('a pod to be denied is allowed with a warning', async () => {
    const response = await run(podReview({ pod: pod({ containers: [{ name: 'a', image: 'evil.example.com/x' }] }) }), audit);
    expect(response.allowed).toBe(true);
    expect(response.warnings?.[0]).toBe('audit: image "evil.example.com/x:latest" (containers[0]): denied by rule "blocked"');
    expect(response.auditAnnotations).toMatchObject({ decision: 'deny', outcome: 'audited' });
  });

  it('a plain allow adds no warning', async () => {
    const response = await run(podReview({ namespace: 'kube-system' }), audit);
    expect(response.warnings).toBeUndefined();
  });
});

describe('requests that are not mutated', () => {
  it.each([
    ['a pod UPDATE that changes no image', { ...podReview({ operation: 'UPDATE' }), request: { ...(podReview({ operation: 'UPDATE' }).request as Json), oldObject: pod() } }],
    ['a pod DELETE with a null object', { ...podReview({ operation: 'DELETE' }), request: { ...(podReview().request as Json), operation: 'DELETE', object: null } }],
    ['a CONNECT', podReview({ operation: 'CONNECT' })],
    ['a pods/status subresource CREATE', podReview({ subResource: 'status' })],
    ['a ConfigMap', { ...podReview(), request: { ...(podReview().request as Json), kind: { group: '', version: 'v1', kind: 'ConfigMap' }, resource: { group: '', version: 'v1', resource: 'configmaps' } } }],
    [
      'a mirror pod created by a kubelet',
      {
        ...podReview({ pod: pod({ nodeName: 'node-1' }, { annotations: { 'kubernetes.io/config.mirror': 'abc' } }) }),
        request: {
          ...(podReview({ pod: pod({ nodeName: 'node-1' }, { annotations: { 'kubernetes.io/config.mirror': 'abc' } }) }).request as Json),
          userInfo: { username: 'system:node:node-1', groups: ['system:nodes', 'system:authenticated'] },
        },
      },
    ],
  ])('%s is allowed untouched', async (_name, review) => {
    const response = await run(review as Json);
    expect(response.allowed).toBe(true);
    expect(response.patch).toBeUndefined();
    expect(response.warnings).toBeUndefined();
  });

  it('a tenant pod that carries the mirror annotation itself is still sandboxed', async () => {
    const review = podReview({ pod: pod({ nodeName: 'node-1' }, { annotations: { 'kubernetes.io/config.mirror': 'abc' } }) });
    const response = await run(review);
    expect(response.auditAnnotations?.decision).toBe('sandbox');
    expect(response.patch).toBeDefined();
  });

  it('a pods/ephemeralcontainers UPDATE with a denied image is denied', async () => {
    const review = podReview({
      operation: 'UPDATE',
      subResource: 'ephemeralcontainers',
      pod: pod({ runtimeClassName: 'gvisor', ephemeralContainers: [{ name: 'd', image: 'evil.example.com/sh' }] }),
    });
    const response = await run(review);
    expect(response.allowed).toBe(false);
    expect(response.status?.message).toContain('evil.example.com/sh');
  });

  it('a pod CREATE whose object is not a pod is denied fail-closed with 400', async () => {
    const review = podReview();
    (review.request as Json).object = { metadata: {}, spec: { containers: 'nginx' } };
    const response = await run(review);
    expect(response.allowed).toBe(false);
    expect(response.status).toEqual({ code: 400, message: 'sandbox-webhook: request.object is not a valid Pod: spec.containers: expected a list' });
  });

  // Each field of the wrong type is named by its whole path in the denial.
  const misshapen: [string, Json, string][] = [
    ['hostNetwork is a string', { hostNetwork: 'yes' }, 'spec.hostNetwork: expected a boolean'],
    ['a volume is a string', { volumes: [{ name: 'a', emptyDir: {} }, 'v'] }, 'spec.volumes[1]: expected an object'],
    ['volumes is an object', { volumes: {} }, 'spec.volumes: expected a list'],
    ['initContainers is a string', { initContainers: 'c' }, 'spec.initContainers: expected a list'],
    ['a container is a list', { containers: [[]] }, 'spec.containers[0]: expected an object'],
    ['a container name is a number', { containers: [{ name: 1, image: 'nginx' }] }, 'spec.containers[0].name: expected a string'],
    ['an image is an object', { containers: [{ name: 'a', image: 'nginx' }, { name: 'b', image: {} }] }, 'spec.containers[1].image: expected a string'],
    ['a securityContext is a string', { containers: [{ name: 'a', image: 'nginx', securityContext: 'x' }] }, 'spec.containers[0].securityContext: expected an object'],
    [
      'privileged is a string',
      { ephemeralContainers: [{ name: 'a', image: 'nginx', securityContext: { privileged: 'true' } }] },
      'spec.ephemeralContainers[0].securityContext.privileged: expected a boolean',
    ],
    ['the 40th container has no valid image', { containers: [...Array.from({ length: 39 }, (_, i) => ({ name: `c${i}`, image: 'nginx' })), { name: 'x', image: 7 }] }, 'spec.containers[39].image: expected a string'],
    ['a nodeSelector value is a number', { containers: [], nodeSelector: { zone: 1 } }, 'spec.nodeSelector.zone: expected a string'],
  ];
  for (const [name, spec, message] of misshapen) {
    it(`a pod whose ${name} is denied with 400, naming ${message.split(':')[0]}`, async () => {
      const review = podReview();
      (review.request as Json).object = { metadata: { name: 'p' }, spec };
      const response = await run(review);
      expect(response.allowed).toBe(false);
      expect(response.status).toEqual({ code: 400, message: `sandbox-webhook: request.object is not a valid Pod: ${message}` });
    });
  }
});

describe('admit() waits for the namespace only when it must', () => {
  const labels = { 'team-a': { 'sandbox-webhook.io/tenant': 'true' } };
  const known: ClusterFacts = { namespace: (name) => ({ name, labels: labels[name as 'team-a'] }), runtimeClass: facts().runtimeClass };

  it('a namespace from the cache and one looked up give the same answer', async () => {
    const review = podReview({ namespace: 'team-a' });
    const waited = await admit(request(review), TENANT_POLICY, facts({ labels }));
    const atOnce = await admit(request(review), TENANT_POLICY, known);
    expect(waited.response).toEqual(atOnce.response);
    expect(waited.response).toMatchObject({ allowed: true, patchType: 'JSONPatch', auditAnnotations: { rule: 'tenants' } });
  });

  it("a decision's reason is given in words", async () => {
    const { summary } = await admit(request(podReview({ namespace: 'team-a' })), TENANT_POLICY, known);
    expect(summary.reason).toBe('namespace labels match sandbox-webhook.io/tenant=true');
  });
});
