// sandboxPatch writes its operations directly (spec.runtimeClassName, the rule annotation). These
// tests hold it to the patch that fast-json-patch compare() gives over the whole pod and its mutated
// copy, on real pods and on odd shapes, and check that the patch applies.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { RULE_ANNOTATION, sandboxPatch } from '../../src/admission/admit.js';
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

const byPath = (a: fastJsonPatch.Operation, b: fastJsonPatch.Operation): number => a.path.localeCompare(b.path);

function expectSamePatch(pod: Json, runtimeClassName = 'gvisor', rule = 'tenants'): void {
  const before = JSON.stringify(pod);
  const patch = sandboxPatch(pod, runtimeClassName, rule);
  // The same operations; their order does not matter, since they touch different paths.
  expect([...patch].sort(byPath)).toEqual(wholePodPatch(pod, runtimeClassName, rule).sort(byPath));
  expect(JSON.stringify(pod)).toBe(before);
  const applied = fastJsonPatch.applyPatch(fastJsonPatch.deepClone(pod), patch, true, false).newDocument as Json;
  expect((applied.spec as Json).runtimeClassName).toBe(runtimeClassName);
  expect(((applied.metadata as Json).annotations as Json)[RULE_ANNOTATION]).toBe(rule);
}

const reviewPods: [string, Json][] = [
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


describe('sandboxPatch on every combination of what it depends on', () => {
  for (const metadataFirst of [true, false]) {
    for (const annotations of ['absent', 'none of ours', 'ours, this rule', 'ours, another rule']) {
      for (const runtimeClass of ['absent', 'gvisor', 'runc', 'null']) {
        it(`metadata ${metadataFirst ? 'before' : 'after'} spec, annotations ${annotations}, runtimeClassName ${runtimeClass}`, () => {
          const metadata: Json = { name: 'pod', labels: { app: 'a' } };
          if (annotations !== 'absent') metadata.annotations = { note: 'a' };
          if (annotations === 'ours, this rule') (metadata.annotations as Json)[RULE_ANNOTATION] = 'tenants';
          if (annotations === 'ours, another rule') (metadata.annotations as Json)[RULE_ANNOTATION] = 'other';
          const spec: Json = { containers: [{ name: 'a', image: 'registry.example.com/a:1' }] };
          if (runtimeClass !== 'absent') spec.runtimeClassName = runtimeClass === 'null' ? null : runtimeClass;
          const pod = metadataFirst ? { apiVersion: 'v1', metadata, spec } : { apiVersion: 'v1', spec, metadata };
          for (const [runtimeClassName, rule] of [['gvisor', 'tenants'], ['kata', 'tenants'], ['gvisor', 'other']] as const) {
            expectSamePatch(pod, runtimeClassName, rule);
          }
        });
      }
    }
  }
});
