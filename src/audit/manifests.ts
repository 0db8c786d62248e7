// Manifests checked offline (`sandbox-webhook evaluate -f`, `sandbox-webhook test`): Pods, the
// workload kinds and Lists, read from multi-document YAML or JSON, each decided by the same admit()
// the webhook answers with, as a CREATE in its namespace.
// Namespace labels come, first to last, from a Namespace object in the input, the labels given on
// the command line, or the cluster; a namespace known from none of them is decided fail-safe.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { parseAllDocuments } from 'yaml';
import { admit } from '../admission/admit.js';
import type { ClusterFacts } from '../admission/facts.js';
import type { AdmissionRequest, AdmissionResponse } from '../admission/review.js';
import { judgeWorkload, workloadKindOf, type WorkloadKind } from '../admission/workloads.js';
import type { NamespaceFacts } from '../policy/evaluate.js';
import type { Policy } from '../policy/policy.js';
import type { Labels } from '../policy/selector.js';
import { isRecord, type Json } from '../json.js';

export const MAX_INPUT_BYTES = 32 * 1024 * 1024;
export const MAX_OBJECTS = 100_000;
const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export interface Manifest {
  /** `deploy.yaml#2` (the document), `list.yaml#1.items[3]` */
  readonly source: string;
  readonly object: Json;
}


/** The files a -f argument names: the file, or a directory's .yaml, .yml and .json files (not recursive, as kubectl). */
export function manifestFiles(path: string): string[] {
  if (path === '-') return ['-'];
  const stat = statSync(path);
  if (!stat.isDirectory()) return [path];
  return readdirSync(path)
    .filter((name) => MANIFEST_EXTENSIONS.has(extname(name)))
    .sort()
    .map((name) => join(path, name));
}

/** Every object of a YAML or JSON text, Lists flattened. Throws with the document's place on a syntax error. */
export function parseManifests(text: string, name: string): Manifest[] {
  if (Buffer.byteLength(text) > MAX_INPUT_BYTES) throw new Error(`${name}: larger than ${MAX_INPUT_BYTES} bytes`);
  const out: Manifest[] = [];
  const documents = parseAllDocuments(text, { prettyErrors: true });
  const list = Array.isArray(documents) ? documents : [documents];
  list.forEach((document, index) => {
    if (document.errors.length > 0) throw new Error(`${name}#${index + 1}: ${document.errors[0]?.message.split('\n')[0] ?? 'YAML error'}`);
    const value: unknown = document.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return;
    const source = `${name}#${index + 1}`;
    if (!isRecord(value)) throw new Error(`${source}: expected an object (a Kubernetes manifest), got ${Array.isArray(value) ? 'a list' : typeof value}`);
    flatten(value, source, out);
  });
  if (out.length > MAX_OBJECTS) throw new Error(`${name}: more than ${MAX_OBJECTS} objects`);
  return out;
}

function flatten(object: Json, source: string, out: Manifest[]): void {
  if (typeof object.kind === 'string' && object.kind.endsWith('List') && Array.isArray(object.items)) {
    object.items.forEach((item, i) => {
      if (!isRecord(item)) throw new Error(`${source}.items[${i}]: expected an object`);
      flatten(item, `${source}.items[${i}]`, out);
    });
    return;
  }
  out.push({ source, object });
}

export function readManifests(paths: readonly string[], readStdin: () => string): Manifest[] {
  const out: Manifest[] = [];
  for (const path of paths) {
    for (const file of manifestFiles(path)) {
      const text = file === '-' ? readStdin() : readFileSync(file, 'utf8');
      out.push(...parseManifests(text, file === '-' ? '<stdin>' : file));
    }
  }
  return out;
}

/**
 * `--namespace-labels` values: `NS:key=value,key=value` gives namespace NS those labels (`NS:` none);
 * a value without `:` (`key=value,...`) gives them to every namespace known from nowhere else.
 * Namespace names and label keys and values never hold `:` or `=` the other way round, so the
 * syntax is unambiguous.
 */
export function parseNamespaceLabels(values: readonly string[]): { byNamespace: Map<string, Labels>; fallback: Labels | undefined } {
  const byNamespace = new Map<string, Labels>();
  let fallback: Labels | undefined;
  for (const value of values) {
    const colon = value.indexOf(':');
    const labels: Record<string, string> = {};
    for (const pair of (colon === -1 ? value : value.slice(colon + 1)).split(',').filter(Boolean)) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new Error(`--namespace-labels ${value}: "${pair}" is not key=value`);
      labels[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    if (colon === -1) fallback = { ...fallback, ...labels };
    else {
      const namespace = value.slice(0, colon);
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace)) throw new Error(`--namespace-labels ${value}: "${namespace}" is not a namespace name`);
      byNamespace.set(namespace, { ...byNamespace.get(namespace), ...labels });
    }
  }
  return { byNamespace, fallback };
}

/** Facts for evaluation: Namespace objects of the input, then the given labels, then `base` (the cluster, or nothing). */
export function layeredFacts(manifests: readonly Manifest[], given: ReturnType<typeof parseNamespaceLabels>, base: ClusterFacts): ClusterFacts {
  const known = new Map<string, NamespaceFacts>();
  for (const [name, labels] of given.byNamespace) known.set(name, { name, labels });
  for (const { object } of manifests) {
    if (object.kind !== 'Namespace' || object.apiVersion !== 'v1') continue;
    const metadata = isRecord(object.metadata) ? object.metadata : {};
    if (typeof metadata.name !== 'string') continue;
    const labels: Record<string, string> = {};
    if (isRecord(metadata.labels)) for (const [k, v] of Object.entries(metadata.labels)) if (typeof v === 'string') labels[k] = v;
    // The apiserver sets this label on every namespace.
    labels['kubernetes.io/metadata.name'] = metadata.name;
    known.set(metadata.name, { name: metadata.name, labels });
  }
  const fallback = given.fallback;
  return {
    namespace: (name) => known.get(name) ?? (fallback ? { name, labels: fallback } : base.namespace(name)),
    runtimeClass: (name) => base.runtimeClass(name),
  };
}

/** What the webhook does to the object itself. */
export type Result = 'patched' | 'unchanged' | 'denied' | 'warned' | 'error';

export interface Evaluation {
  readonly source: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** the pod-level decision (a workload's: its template's) */
  readonly decision: string;
  readonly rule: string;
  /** the RuntimeClass its pods would run with; undefined: the node's default */
  readonly runtimeClassName: string | undefined;
  readonly result: Result;
  readonly warnings: readonly string[];
  /** the JSON Patch the webhook would send (a workload's template is never patched) */
  readonly patch: readonly fastJsonPatch.Operation[] | undefined;
  /** the denial or error message */
  readonly message: string | undefined;
}

function decodePatch(response: AdmissionResponse): fastJsonPatch.Operation[] | undefined {
  return response.patch ? (JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as fastJsonPatch.Operation[]) : undefined;
}

/** The class a pod runs with once the patch is applied. */
function finalClass(object: Json, patch: readonly fastJsonPatch.Operation[] | undefined): string | undefined {
  const set = patch?.find((op) => op.path === '/spec/runtimeClassName' && (op.op === 'add' || op.op === 'replace'));
  if (set && 'value' in set && typeof set.value === 'string') return set.value;
  const spec = isRecord(object.spec) ? object.spec : {};
  return typeof spec.runtimeClassName === 'string' && spec.runtimeClassName !== '' ? spec.runtimeClassName : undefined;
}

function requestFor(object: Json, kind: WorkloadKind | undefined, namespace: string): AdmissionRequest {
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  return {
    uid: 'offline-evaluation',
    kind: kind ? { group: kind.group, version: 'v1', kind: kind.kind } : { group: '', version: 'v1', kind: 'Pod' },
    resource: kind ? { group: kind.group, version: 'v1', resource: kind.resource } : { group: '', version: 'v1', resource: 'pods' },
    subResource: undefined,
    name: typeof metadata.name === 'string' ? metadata.name : undefined,
    namespace,
    operation: 'CREATE',
    object,
    oldObject: undefined,
    dryRun: true,
    userInfo: { username: 'offline-evaluation', groups: [] },
  };
}

/** Whether the object is one the webhook decides: a v1 Pod or a workload kind. */
export function isEvaluated(object: Json): boolean {
  return (object.apiVersion === 'v1' && object.kind === 'Pod') || workloadKindOf(object.apiVersion, object.kind) !== undefined;
}

/** Decides one Pod or workload as a CREATE in its namespace (`defaultNamespace` when it names none). */
export async function evaluateManifest(manifest: Manifest, policy: Policy, cluster: ClusterFacts, defaultNamespace: string): Promise<Evaluation> {
  const { object, source } = manifest;
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  const namespace = typeof metadata.namespace === 'string' && metadata.namespace !== '' ? metadata.namespace : defaultNamespace;
  const name = String(metadata.name ?? (typeof metadata.generateName === 'string' ? `${metadata.generateName}*` : ''));
  const kind = workloadKindOf(object.apiVersion, object.kind);
  const base = { source, kind: String(object.kind), namespace, name };
  if (kind) {
    const judged = await judgeWorkload(requestFor(object, kind, namespace), policy, cluster);
    const { response, summary } = judged.result;
    const podPatch = judged.pod ? decodePatch(judged.pod.result.response) : undefined;
    const result: Result = summary.decision === 'none' ? 'error' : !response.allowed ? 'denied' : (response.warnings ?? []).length > 0 ? 'warned' : 'unchanged';
    return {
      ...base,
      decision: summary.decision,
      rule: summary.rule,
      runtimeClassName: judged.pod ? finalClass(judged.pod.object, podPatch) : undefined,
      result,
      warnings: response.warnings ?? [],
      patch: undefined,
      message: response.status?.message ?? (result === 'warned' ? summary.reason : undefined),
    };
  }
  const { response, summary } = await admit(requestFor(object, undefined, namespace), policy, cluster);
  const patch = decodePatch(response);
  return {
    ...base,
    decision: summary.decision,
    rule: summary.rule,
    runtimeClassName: finalClass(object, patch),
    result: summary.decision === 'none' ? 'error' : !response.allowed ? 'denied' : patch ? 'patched' : 'unchanged',
    warnings: response.warnings ?? [],
    patch,
    message: response.status?.message,
  };
}

export type FailOn = 'deny' | 'violation' | 'never';
export const FAIL_ON: readonly FailOn[] = ['deny', 'violation', 'never'];

/**
 * Whether an evaluation fails a CI gate: `deny` fails on anything the webhook would deny, and on a
 * workload whose pods it would deny; `violation` also on what it would change (a pod not sandboxed
 * as written).
 */
export function fails(evaluation: Evaluation, failOn: FailOn): boolean {
  if (failOn === 'never') return false;
  const denied = evaluation.result === 'denied' || evaluation.result === 'warned' || evaluation.result === 'error';
  return denied || (failOn === 'violation' && evaluation.result === 'patched');
}
