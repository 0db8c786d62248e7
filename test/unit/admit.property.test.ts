// Property tests over generated pods, policies and namespaces (fast-check). The invariant of the
// product: an admitted pod that does not run in an accepted class has every image (containers,
// init, ephemeral, image volumes) allowed by the rule that decided it, and its namespace matched
// that rule; on CREATE, UPDATE and ephemeral containers alike. And every answer stays within its
// size caps.
//
// The oracle is independent of the code under test: images and patterns are generated from their
// canonical parts and then spelled in one of the equivalent ways (docs/image-references.md), so
// the oracle matches canonical forms with minimatch and never runs the webhook's normalisation.

import fc from 'fast-check';
import fastJsonPatch from 'fast-json-patch';
import { minimatch } from 'minimatch';
import { afterAll, describe, expect, it } from 'vitest';
import { admit, type AdmissionResult } from '../../src/admission/admit.js';
import type { ClusterFacts } from '../../src/admission/facts.js';
import { decodeReview, MESSAGE_MAX_CHARS, WARNINGS_MAX_COUNT } from '../../src/admission/review.js';
import { compilePolicy, type Policy } from '../../src/policy/policy.js';
import type { Json } from '../support/review.js';

const RUNS = Number(process.env.PROPERTY_RUNS ?? 2500);
const DIGEST = `sha256:${'a'.repeat(64)}`;

// Registries with every spelling that reaches them.
const REGISTRIES = [
  { canonical: 'docker.io', spellings: ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'docker.io:443', 'index.docker.io:443', 'registry-1.docker.io:443', 'Docker.IO'] },
  { canonical: 'registry.example.com', spellings: ['registry.example.com', 'registry.example.com:443', 'REGISTRY.example.com'] },
  { canonical: 'evil.example.com', spellings: ['evil.example.com', 'evil.example.com:443', 'Evil.Example.Com:443'] },
  { canonical: 'registry.example.com:5000', spellings: ['registry.example.com:5000'] },
];
const REPOSITORIES = ['library/nginx', 'team/app', 'platform/api', 'platform/tools/agent'];
const PATH_GLOBS = ['**', 'platform/**', 'library/*', 'team/app', 'platform/api'];
const NAMESPACES = ['team-a', 'team-b', 'platform', 'kube-system'];
const NAMESPACE_GLOBS = ['team-*', 'platform', 'kube-*'];
const TIERS = ['tenant', 'platform'];

interface Canonical {
  readonly repository: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}
interface GeneratedImage {
  readonly spelled: string;
  readonly canonical: Canonical;
}
interface GeneratedPattern {
  readonly spelled: string;
  readonly repository: string;
  readonly tag: string | undefined;
}

const imageArb: fc.Arbitrary<GeneratedImage> = fc
  .record({
    registry: fc.constantFrom(...REGISTRIES),
    spelling: fc.nat(),
    repository: fc.constantFrom(...REPOSITORIES),
    version: fc.constantFrom<['tag', string] | ['digest', string] | ['none', '']>(['tag', '1'], ['tag', '2'], ['tag', 'latest'], ['digest', DIGEST], ['none', '']),
    short: fc.boolean(),
  })
  .map(({ registry, spelling, repository, version, short }) => {
    const suffix = version[0] === 'tag' ? `:${version[1]}` : version[0] === 'digest' ? `@${version[1]}` : '';
    const host = registry.spellings[spelling % registry.spellings.length] as string;
    // Docker Hub's official images may be written without registry and `library/`.
    const name = short && registry.canonical === 'docker.io' && repository.startsWith('library/') ? repository.slice('library/'.length) : `${host}/${repository}`;
    return {
      spelled: name + suffix,
      canonical: {
        repository: `${registry.canonical}/${repository}`,
        tag: version[0] === 'tag' ? version[1] : version[0] === 'none' ? 'latest' : undefined,
        digest: version[0] === 'digest' ? version[1] : undefined,
      },
    };
  });

const patternArb: fc.Arbitrary<GeneratedPattern> = fc
  .record({ registry: fc.constantFrom(...REGISTRIES), spelling: fc.nat(), path: fc.constantFrom(...PATH_GLOBS), tag: fc.constantFrom(undefined, '1', 'latest') })
  .map(({ registry, spelling, path, tag }) => ({
    spelled: `${registry.spellings[spelling % registry.spellings.length] as string}/${path}${tag === undefined ? '' : `:${tag}`}`,
    repository: `${registry.canonical}/${path}`,
    tag,
  }));

interface GeneratedRule {
  readonly action: 'sandbox' | 'allow' | 'deny';
  readonly namespaces?: string[];
  readonly tier?: string;
  readonly anyImage?: GeneratedPattern[];
  readonly allImages?: GeneratedPattern[];
}

const ruleArb: fc.Arbitrary<GeneratedRule> = fc.record(
  {
    action: fc.constantFrom('sandbox' as const, 'allow' as const, 'deny' as const),
    namespaces: fc.uniqueArray(fc.constantFrom(...NAMESPACE_GLOBS), { minLength: 1, maxLength: 2 }),
    tier: fc.constantFrom(...TIERS),
    anyImage: fc.array(patternArb, { minLength: 1, maxLength: 2 }),
    allImages: fc.array(patternArb, { minLength: 1, maxLength: 2 }),
  },
  { requiredKeys: ['action'] },
);

const policyArb = fc.record({
  rules: fc.array(ruleArb, { maxLength: 5 }),
  defaultAction: fc.constantFrom('sandbox' as const, 'allow' as const, 'deny' as const),
  onConflict: fc.constantFrom('deny', 'override'),
});

const containerList = (min: number, max: number): fc.Arbitrary<GeneratedImage[]> => fc.array(imageArb, { minLength: min, maxLength: max });
const podArb = fc.record({
  containers: containerList(1, 3),
  initContainers: containerList(0, 2),
  ephemeralContainers: containerList(0, 1),
  imageVolumes: containerList(0, 2),
  runtimeClassName: fc.constantFrom(undefined, 'gvisor', 'runc'),
});
type GeneratedPod = typeof podArb extends fc.Arbitrary<infer T> ? T : never;

const namespaceArb = fc.record({ name: fc.constantFrom(...NAMESPACES), tier: fc.constantFrom(...TIERS, undefined), known: fc.boolean() });
type GeneratedNamespace = typeof namespaceArb extends fc.Arbitrary<infer T> ? T : never;

function podObject(pod: GeneratedPod): Json {
  const list = (images: GeneratedImage[], prefix: string): Json[] => images.map((image, i) => ({ name: `${prefix}${i}`, image: image.spelled }));
  const spec: Json = { containers: list(pod.containers, 'c'), initContainers: list(pod.initContainers, 'i'), ephemeralContainers: list(pod.ephemeralContainers, 'e') };
  if (pod.imageVolumes.length > 0) spec.volumes = pod.imageVolumes.map((image, i) => ({ name: `v${i}`, image: { reference: image.spelled } }));
  if (pod.runtimeClassName !== undefined) spec.runtimeClassName = pod.runtimeClassName;
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec };
}

function allImages(pod: GeneratedPod): GeneratedImage[] {
  return [...pod.containers, ...pod.initContainers, ...pod.ephemeralContainers, ...pod.imageVolumes];
}

function compile(generated: typeof policyArb extends fc.Arbitrary<infer T> ? T : never): Policy {
  const rules = generated.rules.map((rule, i) => ({
    name: `r${i}`,
    action: rule.action,
    match: {
      ...(rule.namespaces ? { namespaces: rule.namespaces } : {}),
      ...(rule.tier ? { namespaceSelector: { matchLabels: { tier: rule.tier } } } : {}),
      ...(rule.anyImage ? { anyImage: rule.anyImage.map((p) => p.spelled) } : {}),
      ...(rule.allImages ? { allImages: rule.allImages.map((p) => p.spelled) } : {}),
    },
  }));
  const result = compilePolicy({ apiVersion: 'sandbox-webhook.io/v1alpha1', kind: 'SandboxPolicy', spec: { defaultAction: generated.defaultAction, onConflict: generated.onConflict, rules } });
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return result.policy;
}

// The oracle: does a rule match, on canonical forms? 'maybe' where the namespace labels are unknown.
function patternMatches(pattern: GeneratedPattern, image: Canonical): boolean {
  return minimatch(image.repository, pattern.repository, { dot: true }) && (pattern.tag === undefined || image.tag === pattern.tag);
}

function oracle(rule: GeneratedRule, namespace: GeneratedNamespace, images: GeneratedImage[]): 'yes' | 'no' | 'maybe' {
  if (rule.namespaces && !rule.namespaces.some((glob) => minimatch(namespace.name, glob))) return 'no';
  if (rule.anyImage && !images.some((image) => rule.anyImage?.some((p) => patternMatches(p, image.canonical)))) return 'no';
  if (rule.allImages && (images.length === 0 || !images.every((image) => rule.allImages?.some((p) => patternMatches(p, image.canonical))))) return 'no';
  if (rule.tier !== undefined) {
    if (!namespace.known) return 'maybe';
    if (namespace.tier !== rule.tier) return 'no';
  }
  return 'yes';
}

function facts(namespace: GeneratedNamespace): ClusterFacts {
  return {
    namespace: (name) => {
      const labels: Record<string, string> = namespace.tier ? { tier: namespace.tier } : {};
      return namespace.known ? { name, labels } : { name, labels: undefined, unknownReason: 'generated' };
    },
    runtimeClass: (name) => (name === 'gvisor' || name === 'runc' ? { state: 'present', handler: name, nodeSelector: {} } : { state: 'missing' }),
  };
}

function review(operation: 'CREATE' | 'UPDATE', namespace: string, object: Json, oldObject: Json | null, subResource?: string): Json {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      ...(subResource ? { subResource } : {}),
      name: 'p',
      namespace,
      operation,
      userInfo: { username: 'alice' },
      object,
      oldObject,
    },
  };
}

async function run(body: Json, policy: Policy, cluster: ClusterFacts): Promise<AdmissionResult> {
  const decoded = decodeReview(body);
  if (!decoded.ok) throw new Error(decoded.message);
  return admit(decoded.request, policy, cluster);
}

function expectWithinCaps(result: AdmissionResult): void {
  expect(result.response.status?.message.length ?? 0).toBeLessThanOrEqual(MESSAGE_MAX_CHARS);
  expect(result.summary.reason.length).toBeLessThanOrEqual(MESSAGE_MAX_CHARS);
  const warnings = result.response.warnings ?? [];
  expect(warnings.length).toBeLessThanOrEqual(WARNINGS_MAX_COUNT);
  for (const warning of warnings) expect(warning.length).toBeLessThan(120);
}

/**
 * The invariant for a pod admitted outside the accepted class: the rule that decided (by the
 * `rule` audit annotation) surely matches by the oracle, allows, and no earlier rule may match; or
 * the default allowed and no rule matches. (An allow rule that only may match is passed over, since
 * either way the pod is allowed.)
 */
function expectAllowedByItsRule(result: AdmissionResult, rules: readonly GeneratedRule[], defaultAction: string, namespace: GeneratedNamespace, images: GeneratedImage[]): void {
  const decidedBy = result.response.auditAnnotations?.rule;
  const position = decidedBy === 'default' ? rules.length : Number(decidedBy?.slice(1));
  expect(Number.isInteger(position), `decided by ${decidedBy}`).toBe(true);
  // An earlier rule does not match; or it only may (labels unknown) and would allow as well.
  for (let i = 0; i < position; i++) {
    const earlier = rules[i] as GeneratedRule;
    const m = oracle(earlier, namespace, images);
    expect(m === 'no' || (m === 'maybe' && earlier.action === 'allow'), `earlier rule r${i}: ${m}, ${earlier.action}`).toBe(true);
  }
  const rule = rules[position];
  if (rule === undefined) {
    expect(defaultAction).toBe('allow');
  } else {
    expect(rule.action).toBe('allow');
    expect(oracle(rule, namespace, images)).toBe('yes');
  }
}

const counted = { create: 0, update: 0, unsandboxedAdmitted: 0 };
afterAll(() => {
  process.stdout.write(`property cases run: CREATE ${counted.create}, UPDATE/ephemeral ${counted.update}; admitted outside a sandbox and checked against the oracle: ${counted.unsandboxedAdmitted}\n`);
});

describe('admitted pods outside a sandbox are exactly what their rule allows', () => {
  it('on CREATE, after the patch', async () => {
    await fc.assert(
      fc.asyncProperty(policyArb, podArb, namespaceArb, fc.constantFrom('enforce', 'audit'), async (generated, pod, namespace, mode) => {
        counted.create++;
        const policy = compile(generated);
        const effective = mode === 'enforce' ? policy : { ...policy, mode: 'audit' as const };
        const object = podObject(pod);
        const result = await run(review('CREATE', namespace.name, object, null), effective, facts(namespace));
        expectWithinCaps(result);
        if (mode === 'audit' || !result.response.allowed) return;
        const patch = result.response.patch ? (JSON.parse(Buffer.from(result.response.patch, 'base64').toString()) as fastJsonPatch.Operation[]) : [];
        const after = fastJsonPatch.applyPatch(fastJsonPatch.deepClone(object), patch, true, false).newDocument as { spec: { runtimeClassName?: string } };
        if (after.spec.runtimeClassName === 'gvisor') return;
        counted.unsandboxedAdmitted++;
        expectAllowedByItsRule(result, generated.rules, generated.defaultAction, namespace, allImages(pod));
      }),
      { numRuns: RUNS },
    );
  }, 60_000);

  it('on UPDATE and on ephemeral containers added', async () => {
    await fc.assert(
      fc.asyncProperty(policyArb, podArb, namespaceArb, containerList(1, 2), fc.nat(), fc.boolean(), async (generated, old, namespace, swapped, at, ephemeral) => {
        counted.update++;
        const policy = compile(generated);
        // The new pod: an image swapped (UPDATE), or an ephemeral container added (the subresource).
        const now: GeneratedPod = ephemeral
          ? { ...old, ephemeralContainers: [...old.ephemeralContainers, ...swapped] }
          : { ...old, containers: old.containers.map((image, i) => (i === at % old.containers.length ? (swapped[0] as GeneratedImage) : image)) };
        const result = await run(review('UPDATE', namespace.name, podObject(now), podObject(old), ephemeral ? 'ephemeralcontainers' : undefined), policy, facts(namespace));
        expectWithinCaps(result);
        expect(result.response.patch).toBeUndefined();
        const changed = JSON.stringify(podObject(now)) !== JSON.stringify(podObject(old));
        if (!result.response.allowed || now.runtimeClassName === 'gvisor' || !changed) return;
        counted.unsandboxedAdmitted++;
        expectAllowedByItsRule(result, generated.rules, generated.defaultAction, namespace, allImages(now));
      }),
      { numRuns: RUNS },
    );
  }, 60_000);
});
