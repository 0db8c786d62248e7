// sandboxPatch diffs only the two subtrees it changes (metadata.annotations, spec.runtimeClassName)
// instead of the whole pod. These tests hold it to the patch that fast-json-patch compare() gives
// over the whole pod and its mutated copy, on real pods and on odd shapes.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { buildFixtures } from '../support/bench-reviews.js';
import { encodedSandboxPatch, RULE_ANNOTATION, sandboxPatch } from '../../src/admission/admit.js';
import { fixture, FIXTURES, HAVE_SHARED_FIXTURES, SHARED_FIXTURES, type Json } from '../support/review.js';

/** The patch as a whole-pod diff: the pod against a copy with the annotation and class set. */
function wholePodPatch(pod: Json, runtimeClassName: string, rule: string): fastJsonPatch.Operation[] {
  const metadata = (pod.metadata ?? {}) as Json;
  const annotations = (metadata.annotations ?? {}) as Json;
  const mutated = {
    ...pod,
    metadata: { ...metadata, annotations: { ...annotations, [RULE_ANNOTATION]: rule } },
    spec: { ...(pod.spec as Json), runtimeClassName },
  };
  return fastJsonPatch.compare(pod, mutated);
}

function expectSamePatch(pod: Json, runtimeClassName = 'gvisor', rule = 'tenants'): void {
  const before = JSON.stringify(pod);
  expect(sandboxPatch(pod, runtimeClassName, rule)).toEqual(wholePodPatch(pod, runtimeClassName, rule));
  expect(JSON.stringify(pod)).toBe(before);
}

const reviewPods: [string, Json][] = [
  ...buildFixtures().map((f): [string, Json] => [`bench fixture ${f.name}`, (JSON.parse(f.body) as { request: { object: Json } }).request.object]),
  ...readdirSync(FIXTURES)
    .filter((file) => file.startsWith('review-') && file.endsWith('.json'))
    .map((file): [string, Json] => [`test fixture ${file}`, (fixture(join(FIXTURES, file)).request as Json).object as Json]),
];

// Odd shapes of pods, as a client could send them.
const shapes: [string, Json][] = [
  ['a pod without metadata', { apiVersion: 'v1', kind: 'Pod', spec: { containers: [] } }],
  ['a pod without annotations', { metadata: { name: 'a' }, spec: {} }],
  ['a pod whose spec comes before its metadata', { spec: { containers: [] }, metadata: { annotations: { a: 'b' } } }],
  ['a pod that already carries the rule annotation with this rule', { metadata: { annotations: { [RULE_ANNOTATION]: 'tenants' } }, spec: {} }],
  ['a pod that carries the rule annotation of another rule', { metadata: { annotations: { [RULE_ANNOTATION]: 'other' } }, spec: {} }],
  ['a pod with another runtimeClassName', { metadata: {}, spec: { runtimeClassName: 'runc' } }],
  ['a pod with this runtimeClassName', { metadata: {}, spec: { runtimeClassName: 'gvisor' } }],
  ['a pod with annotation keys that need escaping', { metadata: { annotations: { 'a/b~c': 'x' } }, spec: {} }],
  ['a pod with null metadata', { metadata: null, spec: {} }],
  ['a pod with null annotations', { metadata: { annotations: null }, spec: {} }],
  ['a pod with an empty runtimeClassName', { metadata: {}, spec: { runtimeClassName: '' } }],
  ['a pod without spec', { metadata: { name: 'a' } }],
  ['a pod with an annotation named __proto__', JSON.parse('{"metadata": {"annotations": {"__proto__": "x", "a": "b"}}, "spec": {}}') as Json],
];

describe('sandboxPatch gives the whole-pod diff', () => {
  for (const [name, pod] of reviewPods) {
    it(`on the ${name}`, () => expectSamePatch(pod));
  }

  it.runIf(HAVE_SHARED_FIXTURES)('on the upstream core.v1.Pod.json (every field set, a runtimeClassName already there)', () => {
    const pod = fixture(join(SHARED_FIXTURES, 'core.v1.Pod.json'));
    expectSamePatch(pod);
    expect(sandboxPatch(pod, 'gvisor', 'tenants').map((op) => op.op)).toEqual(['replace', 'add']);
  });

  it.runIf(HAVE_SHARED_FIXTURES)('on the upstream pod with its runtimeClassName and annotations removed', () => {
    const pod = fixture(join(SHARED_FIXTURES, 'core.v1.Pod.json'));
    delete (pod.spec as Json).runtimeClassName;
    delete (pod.metadata as Json).annotations;
    expectSamePatch(pod);
  });

  it.runIf(HAVE_SHARED_FIXTURES)('on pods of the upstream workload templates', () => {
    for (const file of readdirSync(SHARED_FIXTURES).filter((f) => f.startsWith('apps.') || f.startsWith('batch.'))) {
      const object = fixture(join(SHARED_FIXTURES, file));
      const spec = object.spec as Json;
      const template = (spec.template ?? ((spec.jobTemplate as Json).spec as Json).template) as Json;
      expectSamePatch({ apiVersion: 'v1', kind: 'Pod', ...template });
    }
  });

  for (const [name, pod] of shapes) {
    it(`on ${name}`, () => expectSamePatch(pod));
  }
});


/** What the response must carry: the whole-pod diff, as standard base64 of its JSON, or no patch. */
function wholePodEncoding(pod: Json, runtimeClassName: string, rule: string): string | undefined {
  const patch = wholePodPatch(pod, runtimeClassName, rule);
  return patch.length === 0 ? undefined : Buffer.from(JSON.stringify(patch)).toString('base64');
}

describe('encodedSandboxPatch reuses the encoding of a shape only for pods of that shape', () => {
  // Every combination of what the patch depends on, each pod built twice with different contents
  // (other annotations, names, containers), so that a reused encoding would show if it leaked a value.
  const pods: [string, (filler: string) => Json][] = [];
  for (const metadataFirst of [true, false]) {
    for (const annotations of ['absent', 'none of ours', 'ours, this rule', 'ours, another rule']) {
      for (const runtimeClass of ['absent', 'gvisor', 'runc', 'null']) {
        const name = `metadata ${metadataFirst ? 'before' : 'after'} spec, annotations ${annotations}, runtimeClassName ${runtimeClass}`;
        pods.push([
          name,
          (filler) => {
            const metadata: Json = { name: `pod-${filler}`, labels: { app: filler } };
            if (annotations !== 'absent') metadata.annotations = { [`note-${filler}`]: filler };
            if (annotations === 'ours, this rule') (metadata.annotations as Json)[RULE_ANNOTATION] = 'tenants';
            if (annotations === 'ours, another rule') (metadata.annotations as Json)[RULE_ANNOTATION] = `rule-${filler}`;
            const spec: Json = { containers: [{ name: filler, image: `registry.example.com/${filler}:1` }] };
            if (runtimeClass !== 'absent') spec.runtimeClassName = runtimeClass === 'null' ? null : runtimeClass;
            return metadataFirst ? { apiVersion: 'v1', metadata, spec } : { apiVersion: 'v1', spec, metadata };
          },
        ]);
      }
    }
  }
  pods.push(['a pod without metadata', (filler) => ({ kind: 'Pod', spec: { containers: [{ name: filler }] } })]);

  for (const [name, build] of pods) {
    it(`for a pod with ${name}`, () => {
      for (const filler of ['a', 'bb', 'a']) {
        for (const [runtimeClassName, rule] of [['gvisor', 'tenants'], ['kata', 'tenants'], ['gvisor', 'other rule']] as const) {
          const pod = build(filler);
          expect(encodedSandboxPatch(pod, runtimeClassName, rule)).toBe(wholePodEncoding(pod, runtimeClassName, rule));
        }
      }
    });
  }

  for (const [name, pod] of shapes) {
    it(`for ${name}`, () => {
      expect(encodedSandboxPatch(pod, 'gvisor', 'tenants')).toBe(wholePodEncoding(pod, 'gvisor', 'tenants'));
      expect(encodedSandboxPatch(pod, 'gvisor', 'tenants')).toBe(wholePodEncoding(pod, 'gvisor', 'tenants'));
    });
  }

  it('stays right past its bound, when it starts over (5,000 rules, each shape of pod)', () => {
    const built = pods.map(([, build]) => build('x'));
    for (let i = 0; i < 5000; i++) {
      const pod = built[i % built.length] as Json;
      expect(encodedSandboxPatch(pod, 'gvisor', `rule-${i}`)).toBe(wholePodEncoding(pod, 'gvisor', `rule-${i}`));
    }
  });

  it('decodes to the JSON Patch itself', () => {
    const pod = { metadata: { name: 'a' }, spec: {} };
    const encoded = encodedSandboxPatch(pod, 'gvisor', 'tenants');
    expect(JSON.parse(Buffer.from(encoded ?? '', 'base64').toString('utf8'))).toEqual([
      { op: 'add', path: '/spec/runtimeClassName', value: 'gvisor' },
      { op: 'add', path: '/metadata/annotations', value: { [RULE_ANNOTATION]: 'tenants' } },
    ]);
  });
});
