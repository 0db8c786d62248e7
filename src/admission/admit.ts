// One admission review in, one answer out: which requests the policy sees, how its verdict becomes
// a JSON Patch, warnings and audit annotations. The patch is the diff between the pod and its
// mutated copy (fast-json-patch compare), so no code writes patch operations by hand.

import fastJsonPatch from 'fast-json-patch';
import { decide, judge, type Decision, type NamespaceFacts, type Outcome, type Verdict } from '../policy/evaluate.js';
import { readPod, type PodView } from '../policy/pod.js';
import type { Policy } from '../policy/policy.js';
import type { ClusterFacts } from './facts.js';
import { sanitizeWarnings, type AdmissionRequest, type AdmissionResponse } from './review.js';
import { admitWorkload, workloadKind } from './workloads.js';

const { compare } = fastJsonPatch;

export const RULE_ANNOTATION = 'sandbox-webhook.io/rule';

/** What happened, for logs and metrics. */
export interface AdmissionSummary {
  readonly evaluated: boolean;
  readonly namespace: string;
  readonly pod: string;
  readonly decision: Decision['action'] | 'none';
  readonly rule: string;
  readonly outcome: Outcome | 'skipped' | 'error';
  readonly reason: string;
}

export interface AdmissionResult {
  readonly response: AdmissionResponse;
  readonly summary: AdmissionSummary;
}

type Json = Record<string, unknown>;

/** A kubelet's identity (system:node:<name> in group system:nodes), authenticated by the apiserver. */
function isKubelet(request: AdmissionRequest): boolean {
  return request.userInfo.username.startsWith('system:node:') && request.userInfo.groups.includes('system:nodes');
}

function isPodRequest(request: AdmissionRequest): boolean {
  return request.resource.group === '' && request.resource.resource === 'pods' && request.kind.kind === 'Pod';
}

/**
 * The summary of a decided request. Its reason is put in words only when read (the decision log
 * line): a class, so that the lazy getter is on the prototype and every summary has one fast shape.
 */
class DecidedSummary implements AdmissionSummary {
  readonly evaluated = true;

  constructor(
    readonly namespace: string,
    readonly pod: string,
    readonly decision: AdmissionSummary['decision'],
    readonly rule: string,
    readonly outcome: AdmissionSummary['outcome'],
    private readonly explain: () => string,
  ) {}

  get reason(): string {
    return this.explain();
  }
}

/** The summary of a request the policy did not decide. */
function undecided(request: AdmissionRequest, outcome: 'skipped' | 'error', reason: string): AdmissionSummary {
  return { evaluated: false, namespace: request.namespace ?? '', pod: request.name ?? '', decision: 'none', rule: '', outcome, reason };
}

function skipped(request: AdmissionRequest, reason: string): AdmissionResult {
  return { response: { uid: request.uid, allowed: true }, summary: undecided(request, 'skipped', reason) };
}

/** Fail closed: a review we cannot judge is denied in-band, so even failurePolicy Ignore cannot let it through. */
export function rejected(request: AdmissionRequest, code: number, message: string): AdmissionResult {
  return {
    response: { uid: request.uid, allowed: false, status: { code, message: `sandbox-webhook: ${message}` } },
    summary: undecided(request, 'error', message),
  };
}

function auditAnnotations(verdict: Verdict, mode: Policy['mode']): Record<string, string> {
  const annotations: Record<string, string> = {
    decision: verdict.decision.action,
    rule: verdict.decision.rule,
    outcome: verdict.outcome,
    mode,
  };
  if (verdict.decision.failSafe) annotations['fail-safe'] = 'true';
  return annotations;
}

const has = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);

function isPlainObject(value: unknown): value is Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** `{ ...annotations, [RULE_ANNOTATION]: rule }`, which V8 (Node 20) runs about ten times slower. */
function withRuleAnnotation(annotations: Json, rule: string): Json {
  // Object.assign would call the __proto__ setter where the spread defines a key: keep the spread then.
  if (has(annotations, '__proto__')) return { ...annotations, [RULE_ANNOTATION]: rule };
  const copy: Json = Object.assign({}, annotations);
  copy[RULE_ANNOTATION] = rule;
  return copy;
}

/** The JSON Patch that sets spec.runtimeClassName and the rule annotation: only what changes. */
export function sandboxPatch(pod: Json, runtimeClassName: string, rule: string): fastJsonPatch.Operation[] {
  const metadata = (pod.metadata ?? {}) as Json;
  const annotations = (metadata.annotations ?? {}) as Json;
  const mutatedAnnotations = withRuleAnnotation(annotations, rule);
  const spec = pod.spec;
  const plain =
    isPlainObject(pod) &&
    isPlainObject(spec) &&
    (has(pod, 'metadata') ? isPlainObject(pod.metadata) : true) &&
    (has(metadata, 'annotations') ? isPlainObject(metadata.annotations) : true);
  if (!plain) {
    return compare(pod, { ...pod, metadata: { ...metadata, annotations: mutatedAnnotations }, spec: { ...(spec as Json), runtimeClassName } });
  }
  // The mutated pod differs from the pod only in metadata.annotations and spec.runtimeClassName; the
  // rest would be the pod's own objects, which compare() skips by identity. So diffing just those two
  // subtrees, with the pod's key order (compare visits keys in it), gives the same patch without
  // copying the pod's metadata and spec on every review.
  const before: Json = {};
  const after: Json = {};
  for (const key of Object.keys(pod)) {
    if (key === 'metadata') {
      before.metadata = has(metadata, 'annotations') ? { annotations } : {};
      after.metadata = { annotations: mutatedAnnotations };
    } else if (key === 'spec') {
      before.spec = has(spec, 'runtimeClassName') ? { runtimeClassName: spec.runtimeClassName } : {};
      after.spec = { runtimeClassName };
    }
  }
  if (!has(pod, 'metadata')) after.metadata = { annotations: mutatedAnnotations };
  return compare(before, after);
}

/**
 * What the sandbox patch depends on, as a number: whether metadata, annotations, the rule annotation
 * and spec.runtimeClassName are there (and equal to what is set), and whether metadata comes before
 * spec (compare() visits keys in the pod's order). The patch never holds the pod's own values, only
 * the rule and the class, so pods of one shape get the same patch. Undefined for a pod whose
 * objects are not plain, which is diffed on its own.
 */
function patchShape(pod: Json, runtimeClassName: string, rule: string): number | undefined {
  if (!isPlainObject(pod)) return undefined;
  const spec = pod.spec;
  if (!isPlainObject(spec)) return undefined;
  let shape = 0;
  if (has(pod, 'metadata')) {
    const metadata = pod.metadata;
    if (!isPlainObject(metadata)) return undefined;
    shape |= 1;
    for (const key in pod) {
      if (key === 'metadata') shape |= 2;
      if (key === 'metadata' || key === 'spec') break;
    }
    if (has(metadata, 'annotations')) {
      const annotations = metadata.annotations;
      if (!isPlainObject(annotations) || has(annotations, '__proto__')) return undefined;
      shape |= 4;
      if (has(annotations, RULE_ANNOTATION)) shape |= annotations[RULE_ANNOTATION] === rule ? 8 : 16;
    }
  }
  if (has(spec, 'runtimeClassName')) shape |= spec.runtimeClassName === runtimeClassName ? 32 : 64;
  return shape;
}

function encodePatch(patch: readonly fastJsonPatch.Operation[]): string | undefined {
  return patch.length === 0 ? undefined : Buffer.from(JSON.stringify(patch)).toString('base64');
}

// Encoded patches by rule, class and shape, found without building a key: most reviews repeat a
// handful of them. `null` is a shape that needs no patch. Bounded, since policy reloads bring new
// rule names; when full it starts over.
const ENCODED_PATCHES = new Map<string, Map<string, (string | null | undefined)[]>>();
const ENCODED_PATCHES_MAX_ENTRIES = 4096;
let encodedPatchEntries = 0;

/**
 * The sandbox patch as the response carries it (standard base64 of the JSON Patch), or undefined
 * when the pod already is as it should be. Each shape of pod is diffed and encoded once per rule.
 */
export function encodedSandboxPatch(pod: Json, runtimeClassName: string, rule: string): string | undefined {
  const shape = patchShape(pod, runtimeClassName, rule);
  if (shape === undefined) return encodePatch(sandboxPatch(pod, runtimeClassName, rule));
  const known = ENCODED_PATCHES.get(rule)?.get(runtimeClassName)?.[shape];
  if (known !== undefined) return known ?? undefined;
  const encoded = encodePatch(sandboxPatch(pod, runtimeClassName, rule));
  if (encodedPatchEntries >= ENCODED_PATCHES_MAX_ENTRIES) {
    ENCODED_PATCHES.clear();
    encodedPatchEntries = 0;
  }
  let byClass = ENCODED_PATCHES.get(rule);
  if (!byClass) ENCODED_PATCHES.set(rule, (byClass = new Map()));
  let byShape = byClass.get(runtimeClassName);
  if (!byShape) byClass.set(runtimeClassName, (byShape = []));
  byShape[shape] = encoded ?? null;
  encodedPatchEntries += 1;
  return encoded;
}

/**
 * The answer to one review: at once when every fact is at hand (the common case), or a promise when
 * the namespace's labels must first be read from the API server.
 */
export function admit(request: AdmissionRequest, policy: Policy, cluster: ClusterFacts): AdmissionResult | Promise<AdmissionResult> {
  if (workloadKind(request)) return admitWorkload(request, policy, cluster);
  if (!isPodRequest(request)) return skipped(request, `not a pod (${request.resource.resource})`);
  const ephemeral = request.operation === 'UPDATE' && request.subResource === 'ephemeralcontainers';
  if (request.subResource !== undefined && !ephemeral) return skipped(request, `subresource ${request.subResource}`);
  if (request.operation !== 'CREATE' && !ephemeral) return skipped(request, `operation ${request.operation}`);

  const parsed = readPod(request.object);
  if (!parsed.ok) return rejected(request, 400, `request.object is not a valid Pod: ${parsed.error}`);
  const pod = parsed.pod;
  const namespaceName = request.namespace || (((request.object as Json).metadata as Json | undefined)?.namespace as string | undefined);
  if (!namespaceName) return rejected(request, 400, 'the pod has no namespace (request.namespace is empty)');

  // A literal per summary, not `{ ...base, decision, ... }`: V8 (Node 20) copies a spread followed
  // by more properties about a hundred times slower (~7 us here, on every review).
  const decided: Summarize = (decision, rule, outcome, reason) => new DecidedSummary(namespaceName, pod.displayName, decision, rule, outcome, reason);
  if (pod.isMirror && isKubelet(request)) {
    // Mirror pods are the apiserver's copies of a kubelet's static pods: never mutate them (KUBERNETES.md §3).
    // Only a kubelet makes them: any pod creator can write the annotation (with spec.nodeName), so a
    // tenant's "mirror pod" is judged like any other pod.
    return {
      response: { uid: request.uid, allowed: true, auditAnnotations: { decision: 'allow', rule: 'mirror-pod' } },
      summary: decided('allow', 'mirror-pod', 'unchanged', () => 'mirror pod'),
    };
  }

  const namespace = policy.usesNamespaceLabels
    ? cluster.namespace(namespaceName)
    : { name: namespaceName, labels: undefined, unknownReason: 'not needed' };
  // Most reviews find their namespace in the informer's cache: they are decided in this call, with
  // no promise to wait on. Only a namespace the cache lacks waits for the API server.
  if (namespace instanceof Promise) return namespace.then((facts) => conclude(request, policy, cluster, pod, facts, ephemeral, decided));
  return conclude(request, policy, cluster, pod, namespace, ephemeral, decided);
}

type Summarize = (decision: AdmissionSummary['decision'], rule: string, outcome: AdmissionSummary['outcome'], reason: () => string) => AdmissionSummary;

function conclude(
  request: AdmissionRequest,
  policy: Policy,
  cluster: ClusterFacts,
  pod: PodView,
  namespace: NamespaceFacts,
  ephemeral: boolean,
  decided: Summarize,
): AdmissionResult {
  const decision = decide(policy, namespace, pod);

  if (ephemeral) {
    // Ephemeral containers join the pod's existing sandbox and its runtimeClassName is immutable
    // (KUBERNETES.md §3): nothing to patch, but a deny rule still applies to their images.
    const denied = decision.action === 'deny' && policy.mode === 'enforce';
    return {
      response: denied
        ? {
            uid: request.uid,
            allowed: false,
            status: { code: 403, message: `sandbox-webhook: ephemeral container denied by rule "${decision.rule}": ${decision.reason}` },
            auditAnnotations: { decision: decision.action, rule: decision.rule, outcome: 'denied', mode: policy.mode },
          }
        : { uid: request.uid, allowed: true },
      summary: decided(decision.action, decision.rule, denied ? 'denied' : 'unchanged', () => decision.reason),
    };
  }

  const verdict = judge(policy, decision, pod, (name) => cluster.runtimeClass(name));
  const warnings = sanitizeWarnings(verdict.warnings);
  const response: {
    -readonly [K in keyof AdmissionResponse]: AdmissionResponse[K];
  } = { uid: request.uid, allowed: verdict.allowed, auditAnnotations: auditAnnotations(verdict, policy.mode) };
  if (warnings.length > 0) response.warnings = warnings;
  if (!verdict.allowed) {
    response.status = { code: 403, reason: 'Forbidden', message: `sandbox-webhook: ${verdict.denial ?? 'denied'}` };
  } else if (verdict.setRuntimeClassName !== undefined) {
    const patch = encodedSandboxPatch(request.object as Json, verdict.setRuntimeClassName, decision.rule);
    if (patch !== undefined) {
      response.patch = patch;
      response.patchType = 'JSONPatch';
    }
  }
  return {
    response,
    summary: decided(decision.action, decision.rule, verdict.outcome, () => verdict.denial ?? decision.reason),
  };
}
