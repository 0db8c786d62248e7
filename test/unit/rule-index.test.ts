// The rule index (src/policy/rule-index.ts) only saves work: every decision, reason included, must be
// the one a scan of every rule and every pattern in order gives.

import { describe, expect, it } from 'vitest';
import { patternsPolicy, rulesPolicy } from '../support/scale-policies.js';
import { decide, type Decision } from '../../src/policy/evaluate.js';
import { readPod, type PodView } from '../../src/policy/pod.js';
import { compilePolicy, type Policy } from '../../src/policy/policy.js';
import { candidateRules } from '../../src/policy/rule-index.js';

function compile(document: unknown): Policy {
  const result = compilePolicy(document);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return result.policy;
}

/** The same policy without an index: every rule tried, every pattern list scanned in order. */
function scanned(policy: Policy): Policy {
  return { ...policy, index: { ...policy.index, general: policy.rules, size: policy.rules.length, patternLists: new Map() } };
}

function podWith(images: string[], labels: Record<string, string> = {}): PodView {
  const result = readPod({ metadata: { name: 'p', labels }, spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) } });
  if (!result.ok) throw new Error(result.error);
  return result.pod;
}

/** What a decision says, reason included (read through its getter), without the engine's internals. */
type Said = Pick<Decision, 'action' | 'source' | 'runtimeClassName' | 'reason' | 'failSafe'>;

function said(decision: Decision): Said {
  const { action, source, runtimeClassName, reason, failSafe } = decision;
  return { action, source, runtimeClassName, reason, failSafe };
}

function decideBoth(policy: Policy, namespace: string, pod: PodView): [Said, Said] {
  const facts = { name: namespace, labels: undefined, unknownReason: 'test' };
  return [said(decide(policy, facts, pod)), said(decide(scanned(policy), facts, pod))];
}

const document = (rules: unknown[]): unknown => ({
  apiVersion: 'sandbox-webhook.io/v1alpha1',
  kind: 'SandboxPolicy',
  spec: { defaultAction: 'sandbox', rules },
});

// Namespace rules first, so that the index is in use: small policies skip it and try every rule.
const SYSTEM = [
  { name: 'system', match: { namespaces: ['kube-system'] }, action: 'allow' },
  ...Array.from({ length: 20 }, (_, i) => ({ name: `team-${i}`, match: { namespaces: [`team-${i}`] }, action: 'sandbox' })),
];

describe('an indexed image rule decides as a scan does', () => {
  const cases: [string, string, string, Decision['action']][] = [
    ['a path glob matches an image deep under it', 'registry.example.com/team-a/**', 'registry.example.com/team-a/web/api:1', 'deny'],
    ['a path glob matches the repository it names (minimatch ** matches no segment)', 'registry.example.com/team-a/**', 'registry.example.com/team-a:1.0', 'deny'],
    ['a path glob does not match a sibling sharing a prefix', 'registry.example.com/team-a/**', 'registry.example.com/team-ab/x:1', 'sandbox'],
    ['a doubled slash is collapsed by minimatch', 'registry.example.com//team-a/**', 'registry.example.com/team-a/x:1', 'deny'],
    ['a .. segment is resolved by minimatch', 'registry.example.com/x/../team-a/**', 'registry.example.com/team-a/x:1', 'deny'],
    ['an escaped character is unescaped by minimatch', 'registry.example.com/te\\am-a/**', 'registry.example.com/team-a/x:1', 'deny'],
    ['a brace that expands to .. is resolved', 'registry.example.com/x/{.,y}./team-a/**', 'registry.example.com/team-a/x:1', 'deny'],
    ['a partial segment glob', 'registry.example.com/team-*/web', 'registry.example.com/team-b/web:2', 'deny'],
    ['a tag glob', 'docker.io/library/nginx:1.*', 'nginx:1.27', 'deny'],
    ['a tag glob that does not match', 'docker.io/library/nginx:1.*', 'nginx:2.0', 'sandbox'],
  ];
  for (const [name, pattern, image, expected] of cases) {
    it(`${name}: ${pattern} vs ${image}`, () => {
      const policy = compile(document([...SYSTEM, { name: 'blocked', match: { anyImage: [pattern] }, action: 'deny' }]));
      const [indexed, scan] = decideBoth(policy, 'tenant-a', podWith([image]));
      expect(indexed).toEqual(scan);
      expect(indexed.action).toBe(expected);
    });

    it(`${name}, as one of a long pattern list: ${pattern} vs ${image}`, () => {
      const list = Array.from({ length: 40 }, (_, i) => `mirror-${i}.example.org/**`);
      list.splice(20, 0, pattern);
      const policy = compile(document([...SYSTEM, { name: 'blocked', match: { anyImage: list }, action: 'deny' }]));
      const [indexed, scan] = decideBoth(policy, 'tenant-a', podWith(['busybox:1', image]));
      expect(indexed).toEqual(scan);
      expect(indexed.action).toBe(expected);
    });
  }

  it('the reason names the first pattern in list order that matches, as a scan does', () => {
    const list = ['registry.example.com/**', ...Array.from({ length: 20 }, (_, i) => `mirror-${i}.example.org/**`), 'registry.example.com/team-a/**'];
    const policy = compile(document([...SYSTEM, { name: 'blocked', match: { anyImage: list }, action: 'deny' }]));
    const [indexed, scan] = decideBoth(policy, 'tenant-a', podWith(['registry.example.com/team-a/x:1']));
    expect(indexed).toEqual(scan);
    expect(indexed.reason).toContain('matches "registry.example.com/**"');
  });
});

it('the policies above use the index: a review gets fewer candidates than rules', () => {
  const policy = compile(document([...SYSTEM, { name: 'blocked', match: { anyImage: ['evil.example.net/**'] }, action: 'deny' }]));
  expect(candidateRules(policy.index, 'team-3', podWith(['evil.example.net/x:1'])).map((rule) => rule.name)).toEqual(['team-3', 'blocked']);
});

describe('large generated policies decide as a scan does', () => {
  const pods: [string, string, PodView][] = [
    ['a tenant pod', 'tenant-0042', podWith(['registry.example.com/team-0042/web:1', 'envoyproxy/envoy:v1.31.0'])],
    ['a pod of a team image in another namespace', 'team-x', podWith(['registry.example.com/team-0007/api:2'])],
    ['a pod with a team repository itself', 'team-x', podWith(['registry.example.com/team-0007:2'])],
    ['a system pod', 'kube-system', podWith(['registry.k8s.io/coredns/coredns:v1.11.3'])],
    ['a pod with a blocked image', 'tenant-0042', podWith(['nginx:1', 'evil.example.net/tools/xmrig:6'])],
    ['a pod with a quarantined image', 'tenant-0001', podWith(['registry.example.com/quarantine/team-0004/x:1'])],
    ['a pod with an untrusted docker hub image', 'tenant-0001', podWith(['untrusted-0005/x'])],
    ['a pod with a mirror image', 'tenant-0001', podWith(['mirror-0003.example.org/a/b:1'])],
    ['a pod of an unknown namespace and registry', 'elsewhere', podWith(['quay.io/x/y:1'])],
  ];
  for (const [series, build] of [
    ['rules', rulesPolicy],
    ['image patterns', patternsPolicy],
  ] as const) {
    const policy = compile(build(2000));
    for (const [name, namespace, pod] of pods) {
      it(`with 2,000 ${series}: ${name}`, () => {
        const [indexed, scan] = decideBoth(policy, namespace, pod);
        expect(indexed).toEqual(scan);
      });
    }
  }
});
