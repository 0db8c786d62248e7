// Policy tests (`sandbox-webhook test FILE`), as `kyverno test` and `gator verify` have them: a
// file of cases, each an object and what the policy must do with it, so that an admin pins the
// policy's behaviour before rolling it out. Strictly read: an unknown field or a wrong type is an
// error naming its path, all reported at once.
//
//   apiVersion: sandbox-webhook.io/v1alpha1
//   kind: SandboxPolicyTest
//   policy: ../policies/default.yaml        # relative to this file
//   namespaces:                              # labels; a namespace not listed is unknown (fail-safe)
//     team-a: { sandbox-webhook.io/tenant: "true" }
//   runtimeClasses: [gvisor]                 # classes that exist (default: unknown)
//   cases:
//     - name: tenant pods are sandboxed
//       object: { apiVersion: v1, kind: Pod, metadata: { namespace: team-a }, spec: ... }
//       # or file: pod.yaml (its first object), relative to this file
//       expect: { result: patched, decision: sandbox, rule: tenants, runtimeClassName: gvisor, warning: "..." }

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { ClusterFacts } from '../admission/facts.js';
import { loadPolicyFile } from '../config/policy-file.js';
import type { RuntimeClassFact } from '../policy/evaluate.js';
import { evaluateManifest, isEvaluated, parseManifests, type Evaluation, type Manifest } from './manifests.js';
import { isRecord, type Json } from '../json.js';

export const TEST_KIND = 'SandboxPolicyTest';
const EXPECT_FIELDS = ['result', 'decision', 'rule', 'runtimeClassName', 'warning'] as const;
type Expect = Partial<Record<(typeof EXPECT_FIELDS)[number], string>>;

interface TestCase {
  readonly name: string;
  readonly manifest: Manifest;
  readonly expect: Expect;
}

export interface CaseOutcome {
  readonly name: string;
  readonly passed: boolean;
  /** `rule: expected "tenants", got "default"` */
  readonly differences: readonly string[];
  readonly evaluation: Evaluation;
}

export type TestRun = { ok: true; cases: CaseOutcome[] } | { ok: false; errors: string[] };


function unknownKeys(value: Json, path: string, known: readonly string[], errors: string[]): void {
  for (const key of Object.keys(value)) if (!known.includes(key)) errors.push(`${path}.${key}: unknown field (known: ${known.join(', ')})`);
}

/** Reads and runs a test file. Never throws on bad input: errors come back with their paths. */
export async function runPolicyTest(file: string): Promise<TestRun> {
  const errors: string[] = [];
  let document: unknown;
  try {
    const documents = parseAllDocuments(readFileSync(file, 'utf8'), { prettyErrors: true });
    const first = Array.isArray(documents) ? documents[0] : documents;
    if (!first || first.errors.length > 0) return { ok: false, errors: [`${file}: ${first?.errors[0]?.message.split('\n')[0] ?? 'no YAML document'}`] };
    document = first.toJS({ maxAliasCount: 100 });
  } catch (error) {
    return { ok: false, errors: [`${file}: ${(error as Error).message}`] };
  }
  if (!isRecord(document)) return { ok: false, errors: ['(root): expected an object'] };
  unknownKeys(document, '(root)', ['apiVersion', 'kind', 'metadata', 'policy', 'namespaces', 'runtimeClasses', 'cases'], errors);
  if (document.kind !== TEST_KIND) errors.push(`kind: must be "${TEST_KIND}", got ${JSON.stringify(document.kind) ?? 'nothing'}`);
  if (typeof document.policy !== 'string') errors.push('policy: required, the path of the SandboxPolicy (relative to this file)');
  const base = dirname(file);

  const namespaces = new Map<string, Record<string, string>>();
  if (document.namespaces !== undefined) {
    if (!isRecord(document.namespaces)) errors.push('namespaces: expected an object of namespace: labels');
    else {
      for (const [name, labels] of Object.entries(document.namespaces)) {
        if (labels !== null && !isRecord(labels)) errors.push(`namespaces.${name}: expected an object of labels`);
        else {
          const out: Record<string, string> = { 'kubernetes.io/metadata.name': name };
          for (const [key, value] of Object.entries(labels ?? {})) {
            if (typeof value !== 'string') errors.push(`namespaces.${name}.${key}: expected a string`);
            else out[key] = value;
          }
          namespaces.set(name, out);
        }
      }
    }
  }
  let classes: Set<string> | undefined;
  if (document.runtimeClasses !== undefined) {
    if (!Array.isArray(document.runtimeClasses) || !document.runtimeClasses.every((c) => typeof c === 'string')) {
      errors.push('runtimeClasses: expected a list of RuntimeClass names');
    } else classes = new Set(document.runtimeClasses as string[]);
  }

  const cases: TestCase[] = [];
  if (!Array.isArray(document.cases) || document.cases.length === 0) errors.push('cases: required, a non-empty list');
  else {
    document.cases.forEach((raw: unknown, i) => {
      const path = `cases[${i}]`;
      if (!isRecord(raw)) return void errors.push(`${path}: expected an object`);
      unknownKeys(raw, path, ['name', 'object', 'file', 'expect'], errors);
      if (typeof raw.name !== 'string' || raw.name === '') errors.push(`${path}.name: required`);
      let manifest: Manifest | undefined;
      if ((raw.object === undefined) === (raw.file === undefined)) errors.push(`${path}: give exactly one of object and file`);
      else if (raw.object !== undefined) {
        if (!isRecord(raw.object)) errors.push(`${path}.object: expected an object`);
        else manifest = { source: `${file}:${path}`, object: raw.object };
      } else if (typeof raw.file !== 'string') errors.push(`${path}.file: expected a path`);
      else {
        try {
          manifest = parseManifests(readFileSync(resolve(base, raw.file), 'utf8'), raw.file)[0];
          if (!manifest) errors.push(`${path}.file: ${raw.file} holds no object`);
        } catch (error) {
          errors.push(`${path}.file: ${(error as Error).message}`);
        }
      }
      if (manifest && !isEvaluated(manifest.object)) {
        const { apiVersion, kind } = manifest.object;
        errors.push(`${path}: ${String(kind)} (apiVersion ${JSON.stringify(apiVersion) ?? 'missing'}) is not decided by the webhook (v1 Pods and the workload kinds are)`);
      }
      const expect: Expect = {};
      if (!isRecord(raw.expect)) errors.push(`${path}.expect: required, an object with some of ${EXPECT_FIELDS.join(', ')}`);
      else {
        unknownKeys(raw.expect, `${path}.expect`, EXPECT_FIELDS, errors);
        for (const field of EXPECT_FIELDS) {
          const value = raw.expect[field];
          if (value === undefined) continue;
          if (typeof value !== 'string') errors.push(`${path}.expect.${field}: expected a string`);
          else expect[field] = value;
        }
      }
      if (manifest && typeof raw.name === 'string') cases.push({ name: raw.name, manifest, expect });
    });
  }
  if (errors.length > 0) return { ok: false, errors };

  const loaded = await loadPolicyFile(resolve(base, document.policy as string));
  if (!loaded.ok) return { ok: false, errors: loaded.errors.map((e) => `policy ${String(document.policy)}: ${e}`) };
  const cluster: ClusterFacts = {
    namespace: (name) => {
      const labels = namespaces.get(name);
      return labels ? { name, labels } : { name, labels: undefined, unknownReason: 'not listed under namespaces in the test file' };
    },
    runtimeClass: (name): RuntimeClassFact =>
      classes === undefined ? { state: 'unknown', reason: 'no runtimeClasses in the test file' } : classes.has(name) ? { state: 'present', handler: 'runsc', nodeSelector: {} } : { state: 'missing' },
  };
  const outcomes: CaseOutcome[] = [];
  for (const testCase of cases) {
    const evaluation = await evaluateManifest(testCase.manifest, loaded.policy, cluster, 'default');
    const differences: string[] = [];
    const actual: Record<string, string> = {
      result: evaluation.result,
      decision: evaluation.decision,
      rule: evaluation.rule,
      runtimeClassName: evaluation.runtimeClassName ?? '',
    };
    for (const field of ['result', 'decision', 'rule', 'runtimeClassName'] as const) {
      const expected = testCase.expect[field];
      if (expected !== undefined && expected !== actual[field]) differences.push(`${field}: expected "${expected}", got "${actual[field]}"`);
    }
    const warning = testCase.expect.warning;
    if (warning !== undefined && !evaluation.warnings.some((w) => w.includes(warning))) {
      differences.push(`warning: expected one containing "${warning}", got ${evaluation.warnings.length === 0 ? 'none' : JSON.stringify(evaluation.warnings)}`);
    }
    outcomes.push({ name: testCase.name, passed: differences.length === 0, differences, evaluation });
  }
  return { ok: true, cases: outcomes };
}
