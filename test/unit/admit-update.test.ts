// Paths around the CREATE check (docs/design.md, "What a decision does"): pod UPDATE, ephemeral
// containers, image volumes, and the caps on what an answer says.

import { describe, expect, it } from 'vitest';
import { admit, DENIAL_REASONS, type AdmissionResult } from '../../src/admission/admit.js';
import { offlineFacts } from '../../src/admission/facts.js';
import { decodeReview, MESSAGE_MAX_CHARS, WARNINGS_MAX_COUNT } from '../../src/admission/review.js';
import type { Policy } from '../../src/policy/policy.js';
import { policyFromSpec } from '../support/policy.js';
import { pod, podReview, type Json } from '../support/review.js';

const POLICY = policyFromSpec(`
  acceptedRuntimeClasses: [gvisor, kata]
  rules:
    - name: blocked-registry
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: platform-images
      match: { namespaces: ["platform"], allImages: ["registry.example.com/platform/**"] }
      action: allow
    - name: tenants
      match: { namespaces: ["team-*", "platform"] }
      action: sandbox
`);
const AUDIT = policyFromSpec(`
  mode: audit
  rules:
    - name: blocked-registry
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: platform-images
      match: { namespaces: ["platform"], allImages: ["registry.example.com/platform/**"] }
      action: allow
`);

const TRUSTED = 'registry.example.com/platform/api:1';
const UNTRUSTED = 'docker.io/library/busybox:1.36';

function update(options: { old: Json; now: Json; namespace?: string; subResource?: string; username?: string; groups?: string[] }): Json {
  const review = podReview({ operation: 'UPDATE', namespace: options.namespace ?? 'platform', pod: options.now, ...(options.subResource ? { subResource: options.subResource } : {}) });
  const request = review.request as Json;
  request.oldObject = options.old;
  if (options.username) request.userInfo = { username: options.username, groups: options.groups ?? [] };
  return review;
}

async function answer(review: Json, policy: Policy = POLICY): Promise<AdmissionResult> {
  const decoded = decodeReview(review);
  if (!decoded.ok) throw new Error(decoded.message);
  return admit(decoded.request, policy, offlineFacts);
}

const containers = (...images: string[]): Json[] => images.map((image, i) => ({ name: `c${i}`, image }));
const unsandboxed = (...images: string[]): Json => pod({ containers: containers(...images) });
const sandboxed = (...images: string[]): Json => pod({ runtimeClassName: 'gvisor', containers: containers(...images) });
const withEphemeral = (base: Json, image: string): Json => ({ ...base, spec: { ...(base.spec as Json), ephemeralContainers: [{ name: 'debugger', image }] } });
const withImageVolume = (base: Json, reference: string): Json => ({ ...base, spec: { ...(base.spec as Json), volumes: [{ name: 'models', image: { reference } }] } });

describe('pod UPDATE and ephemeral containers', () => {
  const cases: [string, Json, { allowed: boolean; denialReason?: string; says?: string[] }][] = [
    ['an image swap on an allowed-unsandboxed pod to an untrusted image is denied, naming container, image and rule', update({ old: unsandboxed(TRUSTED), now: unsandboxed(UNTRUSTED) }), { allowed: false, denialReason: 'image_update', says: ['container "c0"', UNTRUSTED, 'rule "tenants"'] }],
    ['an image swap on an allowed-unsandboxed pod to another trusted image is admitted', update({ old: unsandboxed(TRUSTED), now: unsandboxed('registry.example.com/platform/api:2') }), { allowed: true }],
    ['an init container image swap is judged the same', update({ old: pod({ initContainers: containers(TRUSTED), containers: containers(TRUSTED) }), now: pod({ initContainers: containers(UNTRUSTED), containers: containers(TRUSTED) }) }), { allowed: false, denialReason: 'image_update', says: ['spec.initContainers[0].image'] }],
    ['an image swap on a sandboxed pod goes through', update({ old: sandboxed(TRUSTED), now: sandboxed(UNTRUSTED) }), { allowed: true }],
    ['an image swap on a pod in another accepted class goes through', update({ old: pod({ runtimeClassName: 'kata', containers: containers(TRUSTED) }), now: pod({ runtimeClassName: 'kata', containers: containers(UNTRUSTED) }) }), { allowed: true }],
    ['an image swap to a denied image is denied even on a sandboxed pod', update({ old: sandboxed(TRUSTED), now: sandboxed('evil.example.com/x:1') }), { allowed: false, denialReason: 'deny_rule', says: ['blocked-registry', 'evil.example.com/x:1'] }],
    ['a deny rule sees a registry spelled with its default port', update({ old: sandboxed(TRUSTED), now: sandboxed('evil.example.com:443/x:1') }), { allowed: false, denialReason: 'deny_rule' }],
    ['a label change on a pod that predates the webhook is admitted untouched', update({ old: pod({ runtimeClassName: 'runc', containers: containers(UNTRUSTED) }), now: pod({ runtimeClassName: 'runc', containers: containers(UNTRUSTED) }, { labels: { a: 'b' } }), namespace: 'team-a' }), { allowed: true }],
    ['a deletion (finalizers, deletionTimestamp) of a pod with a denied image is admitted untouched', update({ old: unsandboxed('evil.example.com/x:1'), now: pod({ containers: containers('evil.example.com/x:1') }, { deletionTimestamp: '2026-01-01T00:00:00Z', finalizers: [] }) }), { allowed: true }],
    ['an ephemeral container with an untrusted image on an allowed-unsandboxed pod is denied', update({ old: unsandboxed(TRUSTED), now: withEphemeral(unsandboxed(TRUSTED), UNTRUSTED), subResource: 'ephemeralcontainers' }), { allowed: false, denialReason: 'ephemeral_container', says: ['container "debugger"', UNTRUSTED] }],
    ['an ephemeral container with a trusted image on an allowed-unsandboxed pod is admitted', update({ old: unsandboxed(TRUSTED), now: withEphemeral(unsandboxed(TRUSTED), TRUSTED), subResource: 'ephemeralcontainers' }), { allowed: true }],
    ['an ephemeral container with an untrusted image on a sandboxed pod is admitted', update({ old: sandboxed(TRUSTED), now: withEphemeral(sandboxed(TRUSTED), UNTRUSTED), subResource: 'ephemeralcontainers' }), { allowed: true }],
    ['an UPDATE without oldObject re-decides every image', update({ old: null as unknown as Json, now: unsandboxed(UNTRUSTED) }), { allowed: false, denialReason: 'image_update' }],
    ['a kubelet updating its mirror pod keeps the exemption', update({ old: pod({ containers: containers(TRUSTED) }, { annotations: { 'kubernetes.io/config.mirror': 'x' } }), now: pod({ containers: containers(UNTRUSTED) }, { annotations: { 'kubernetes.io/config.mirror': 'x' } }), username: 'system:node:n1', groups: ['system:nodes'] }), { allowed: true }],
  ];
  for (const [name, review, expected] of cases) {
    it(name, async () => {
      const { response, summary } = await answer(review);
      expect(response.allowed).toBe(expected.allowed);
      expect(response.patch).toBeUndefined();
      expect(summary.denialReason).toBe(expected.denialReason);
      for (const text of expected.says ?? []) expect(response.status?.message).toContain(text);
      if (!expected.allowed) expect(response.auditAnnotations).toMatchObject({ outcome: 'denied', mode: 'enforce' });
    });
  }

  it('audit mode admits an image swap but warns and annotates as any other decision', async () => {
    const { response, summary } = await answer(update({ old: unsandboxed(TRUSTED), now: unsandboxed(UNTRUSTED) }), AUDIT);
    expect(response.allowed).toBe(true);
    expect(response.auditAnnotations).toEqual({ decision: 'sandbox', rule: 'default', outcome: 'audited', mode: 'audit' });
    expect(response.warnings?.[0]).toMatch(/^audit: image "docker.io\/library\/busybox:1.36" \(containers\[0\]\)/);
    expect(summary.denialReason).toBeUndefined();
  });

  it('audit mode warns about a denied ephemeral container image', async () => {
    const review = update({ old: sandboxed(TRUSTED), now: withEphemeral(sandboxed(TRUSTED), 'evil.example.com/sh'), subResource: 'ephemeralcontainers' });
    const { response } = await answer(review, AUDIT);
    expect(response.allowed).toBe(true);
    expect(response.auditAnnotations).toMatchObject({ decision: 'deny', rule: 'blocked-registry', outcome: 'audited' });
    expect(response.warnings?.[0]).toContain('evil.example.com/sh');
  });
});

describe('image volumes are images', () => {
  it.each([
    ['an untrusted image volume sends an allowed pod to the sandbox', withImageVolume(unsandboxed(TRUSTED), UNTRUSTED), { allowed: true, patched: true }],
    ['a trusted image volume keeps the pod allowed', withImageVolume(unsandboxed(TRUSTED), 'registry.example.com/platform/models:1'), { allowed: true, patched: false }],
    ['a denied image volume is denied, naming its path', withImageVolume(unsandboxed(TRUSTED), 'evil.example.com/weights:1'), { allowed: false, patched: false }],
  ])('%s', async (_name, object, expected) => {
    const { response } = await answer(podReview({ namespace: 'platform', pod: object }));
    expect(response.allowed).toBe(expected.allowed);
    expect(response.patch !== undefined).toBe(expected.patched);
    if (!expected.allowed) expect(response.status?.message).toContain('spec.volumes[0].image.reference');
  });

  it('an image volume swapped on UPDATE is re-decided', async () => {
    const { response } = await answer(update({ old: withImageVolume(unsandboxed(TRUSTED), TRUSTED), now: withImageVolume(unsandboxed(TRUSTED), UNTRUSTED) }));
    expect(response.allowed).toBe(false);
    expect(response.status?.message).toContain('volume "models"');
  });
});

describe('size caps', () => {
  const many = (count: number, image: (i: number) => string): Json => pod({ containers: Array.from({ length: count }, (_, i) => ({ name: `c${i}`, image: image(i), securityContext: { privileged: true } })) });

  it.each([
    ['55,000 denied images (the first one named)', podReview({ pod: many(55_000, (i) => `evil.example.com/x${i}:1`) }), /evil\.example\.com\/x0:1/],
    ['10,000 privileged containers to sandbox', podReview({ pod: many(10_000, (i) => `docker.io/x/y${i}`) }), /and 9990 more/],
    ['an image swap of 10,000 containers', update({ old: many(10_000, () => TRUSTED), now: many(10_000, (i) => `docker.io/x/y${i}`) }), /and 9990 more/],
  ])('%s: the message, the reason and the warnings stay within their caps', async (_name, review, names) => {
    const { response, summary } = await answer(review);
    expect(response.allowed).toBe(false);
    expect(response.status?.message.length).toBeLessThanOrEqual(MESSAGE_MAX_CHARS);
    expect(response.status?.message).toMatch(names);
    expect(summary.reason.length).toBeLessThanOrEqual(MESSAGE_MAX_CHARS);
    expect(response.warnings?.length ?? 0).toBeLessThanOrEqual(WARNINGS_MAX_COUNT);
    for (const warning of response.warnings ?? []) expect(warning.length).toBeLessThan(120);
  });

  it('every denial reason of the closed set is a metric-safe word', () => {
    for (const reason of DENIAL_REASONS) expect(reason).toMatch(/^[a-z_]+$/);
  });
});

describe('every warning says what decided it within its first 120 characters', () => {
  // Names as long as the policy and the apiserver allow: a rule name of 63 characters, long images.
  const RULE = `tenants-${'x'.repeat(55)}`;
  const DENY = `blocked-${'y'.repeat(55)}`;
  const LONG_IMAGE = `registry.example.com/${'team/'.repeat(12)}app:1.2.3`;
  const spec = (mode: string, extra = ''): Policy =>
    policyFromSpec(`
  mode: ${mode}
  ${extra}
  rules:
    - name: ${DENY}
      match: { anyImage: ["evil.example.com/**"] }
      action: deny
    - name: ${RULE}
      match: { namespaceSelector: { matchLabels: { tier: tenant } } }
      action: sandbox
`);
  const gvisor = { state: 'present', handler: 'runsc', nodeSelector: { 'sandbox.gvisor.dev/runtime': 'gvisor' } } as const;
  const cluster = (classes: Record<string, unknown> = { gvisor }, known = true) => ({
    namespace: (name: string) => (known ? { name, labels: { tier: 'tenant' } } : { name, labels: undefined, unknownReason: 'test' }),
    runtimeClass: (name: string) => (classes[name] ?? { state: 'missing' }) as never,
  });
  const scenarios: [string, string, Json, ReturnType<typeof cluster>, string[]][] = [
    ['sandboxed', '', podReview({ pod: unsandboxed(LONG_IMAGE) }), cluster(), ['"gvisor"']],
    ['class replaced', 'onConflict: override', podReview({ pod: pod({ runtimeClassName: 'runc', containers: containers(LONG_IMAGE) }) }), cluster(), ['"runc"', '"gvisor"']],
    ['denied image', '', podReview({ pod: unsandboxed(LONG_IMAGE, `evil.example.com/${'z'.repeat(80)}`) }), cluster(), ['(containers[1])', 'evil.example.com/']],
    ['incompatible field denied', '', podReview({ pod: pod({ hostNetwork: true, containers: containers(LONG_IMAGE) }) }), cluster(), ['spec.hostNetwork']],
    ['incompatible field warned', 'incompatible: warn', podReview({ pod: pod({ hostPID: true, containers: containers(LONG_IMAGE) }) }), cluster(), ['spec.hostPID']],
    ['class conflict', '', podReview({ pod: pod({ runtimeClassName: 'runc', containers: containers(LONG_IMAGE) }) }), cluster(), ['"runc"']],
    ['class missing', '', podReview({ pod: unsandboxed(LONG_IMAGE) }), cluster({}), ['RuntimeClass "gvisor"']],
    ['class without scheduling', '', podReview({ pod: unsandboxed(LONG_IMAGE) }), cluster({ gvisor: { state: 'present', handler: 'runsc', nodeSelector: undefined } }), ['RuntimeClass "gvisor"']],
    ['nodeSelector conflict', '', podReview({ pod: pod({ nodeSelector: { 'sandbox.gvisor.dev/runtime': 'runc' }, containers: containers(LONG_IMAGE) }) }), cluster(), ['nodeSelector "sandbox.gvisor.dev/ru']],
    ['namespace labels unknown', '', podReview({ pod: unsandboxed(LONG_IMAGE) }), cluster({ gvisor }, false), ['labels of namespace "team-a"']],
    ['image swap', '', update({ namespace: 'team-a', old: unsandboxed(TRUSTED), now: unsandboxed(LONG_IMAGE) }), cluster(), ['(containers[0])']],
    ['ephemeral container', '', update({ namespace: 'team-a', old: unsandboxed(TRUSTED), now: withEphemeral(unsandboxed(TRUSTED), LONG_IMAGE), subResource: 'ephemeralcontainers' }), cluster(), ['(ephemeralContainers[0])']],
  ];
  for (const mode of ['enforce', 'audit']) {
    for (const [name, extra, review, facts, expected] of scenarios) {
      it(`${mode}: ${name}`, async () => {
        const decoded = decodeReview(review);
        if (!decoded.ok) throw new Error(decoded.message);
        const { response } = await admit(decoded.request, spec(mode, extra), facts);
        const cut = (response.warnings ?? []).map((warning) => warning.slice(0, 120));
        expect(cut.length).toBeGreaterThan(0);
        for (const fact of expected) expect(cut.some((warning) => warning.includes(fact)), `${fact} in ${JSON.stringify(cut)}`).toBe(true);
        for (const warning of cut) {
          const says = warning.includes(RULE.slice(0, 20)) || warning.includes(DENY.slice(0, 20)) || warning.includes('spec.defaultAction') || warning.startsWith('RuntimeClass') || warning.includes(': RuntimeClass');
          expect(says, warning).toBe(true);
        }
      });
    }
  }
});

describe('names over the apiserver limits', () => {
  it.each([
    ['metadata.name', { name: 'n'.repeat(254) }],
    ['metadata.generateName', { name: undefined, generateName: 'g'.repeat(254) }],
    ['metadata.namespace', { namespace: 'n'.repeat(254) }],
  ])('a pod whose %s is over 253 characters is denied with 400 before it reaches a message', async (field, metadata) => {
    const review = podReview({ pod: pod({}, metadata) });
    const request = review.request as Json;
    request.name = '';
    request.namespace = '';
    const { response } = await answer(review);
    expect(response.allowed).toBe(false);
    expect(response.status?.code).toBe(400);
    expect(response.status?.message).toContain(`${field}`);
    expect(response.status?.message.length).toBeLessThan(200);
  });
});

describe('namespace names', () => {
  it.each([
    ['64 characters', 'n'.repeat(64)],
    ['upper case', 'Team-A'],
    ['a slash', 'team-a/../kube-system'],
  ])('a pod in a namespace named with %s is denied with 400, the name never quoted', async (_case, namespace) => {
    const review = podReview({ pod: pod({}, { namespace }) });
    (review.request as Json).namespace = namespace;
    const { response } = await answer(review);
    expect(response.allowed).toBe(false);
    expect(response.status?.code).toBe(400);
    expect(response.status?.message).toContain('metadata.namespace: not a valid namespace name');
    expect(response.status?.message).not.toContain(namespace);
  });
});

describe('audit mode logs what enforcement would deny with', () => {
  it('the summary reason of an audited denial is the denial text', async () => {
    const { response, summary } = await answer(update({ old: unsandboxed(TRUSTED), now: unsandboxed(UNTRUSTED) }), AUDIT);
    expect(response.allowed).toBe(true);
    expect(response.status).toBeUndefined();
    expect(summary.reason).toContain(`new image "${UNTRUSTED}" of container "c0" (spec.containers[0].image) must run sandboxed`);
  });
});
