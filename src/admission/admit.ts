// One admission review in, one answer out: which requests the policy sees, how its verdict becomes
// a JSON Patch, warnings and audit annotations.
//   - Pod CREATE is decided and, to be sandboxed, patched: two operations written here directly
//     (docs/kubernetes.md §6); a test holds them equal to a whole-pod diff.
//   - Pod UPDATE (no subresource) and pods/ephemeralcontainers UPDATE are re-decided when they
//     change or add an image, and only admitted or denied: runtimeClassName is immutable
//     (docs/kubernetes.md §3, §7). An update that leaves every image as it was is admitted untouched,
//     so that pods which predate the webhook stay manageable and deletable.
//   - Everything else (DELETE, CONNECT, other subresources, other kinds) is allowed untouched.

import type { Operation } from 'fast-json-patch';
import { decide, judge, judgeUpdate, sourceName, type DenialReason, type Outcome, type Verdict } from '../policy/evaluate.js';
import { readPod, type PodImage, type PodView } from '../policy/pod.js';
import type { Policy } from '../policy/policy.js';
import type { ClusterFacts } from './facts.js';
import { capMessage, sanitizeWarnings, type AdmissionRequest, type AdmissionResponse } from './review.js';
import { isRecord, type Json } from '../json.js';
import { admitWorkload, workloadKind } from './workloads.js';

export { DENIAL_REASONS, type DenialReason } from '../policy/evaluate.js';

export const RULE_ANNOTATION = 'sandbox-webhook.io/rule';

// A DNS-1123 label: what the apiserver accepts as a namespace name.
const NAMESPACE_NAME = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The `rule` a kubelet's mirror pod is reported under (a reserved rule name, policy/policy.ts). */
const MIRROR_POD = 'mirror-pod';

/** What happened, for logs and metrics. */
export interface AdmissionSummary {
  readonly namespace: string;
  readonly pod: string;
  readonly decision: Verdict['decision']['action'] | 'none';
  /** the deciding rule, `default` for spec.defaultAction, `mirror-pod`, or '' when nothing was decided */
  readonly rule: string;
  readonly outcome: Outcome | 'skipped' | 'error';
  /** why, in words, capped like the denial message */
  readonly reason: string;
  /** why it was denied; undefined when it was not */
  readonly denialReason: DenialReason | undefined;
}

export interface AdmissionResult {
  readonly response: AdmissionResponse;
  readonly summary: AdmissionSummary;
}


const has = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);

/** A kubelet's identity (system:node:<name> in group system:nodes), authenticated by the apiserver. */
function isKubelet(request: AdmissionRequest): boolean {
  return request.userInfo.username.startsWith('system:node:') && request.userInfo.groups.includes('system:nodes');
}

function isPodRequest(request: AdmissionRequest): boolean {
  return request.resource.group === '' && request.resource.resource === 'pods' && request.kind.kind === 'Pod';
}

function summary(request: AdmissionRequest, fields: Pick<AdmissionSummary, 'decision' | 'rule' | 'outcome' | 'reason'> & { denialReason?: DenialReason }): AdmissionSummary {
  return {
    namespace: request.namespace ?? '',
    pod: request.name ?? '',
    decision: fields.decision,
    rule: fields.rule,
    outcome: fields.outcome,
    reason: capMessage(fields.reason),
    denialReason: fields.denialReason,
  };
}

function skipped(request: AdmissionRequest, reason: string): AdmissionResult {
  return { response: { uid: request.uid, allowed: true }, summary: summary(request, { decision: 'none', rule: '', outcome: 'skipped', reason }) };
}

/**
 * Fail closed: a review we cannot judge is denied in-band, so even failurePolicy Ignore cannot let
 * it through. A 4xx is the request's fault (`invalid_request`); a 5xx is ours (overload, deadline,
 * internal error), counted by the server's fail-closed metric rather than as a denial reason.
 */
export function rejected(request: AdmissionRequest, code: number, message: string): AdmissionResult {
  const text = capMessage(`sandbox-webhook: ${message}`);
  return {
    response: { uid: request.uid, allowed: false, status: { code, message: text } },
    summary: summary(request, { decision: 'none', rule: '', outcome: 'error', reason: message, ...(code < 500 ? { denialReason: 'invalid_request' as const } : {}) }),
  };
}

/** JSON Pointer escaping of one key (RFC 6901; docs/kubernetes.md §6): `~` first, then `/`. */
function pointerKey(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

/**
 * The JSON Patch that sets spec.runtimeClassName and the rule annotation: only what changes. An
 * absent map is added whole, since `add` onto a missing parent fails (docs/kubernetes.md §6).
 */
export function sandboxPatch(pod: Json, runtimeClassName: string, rule: string): Operation[] {
  const patch: Operation[] = [];
  const spec = isRecord(pod.spec) ? pod.spec : {};
  if (spec.runtimeClassName !== runtimeClassName) {
    patch.push({ op: has(spec, 'runtimeClassName') ? 'replace' : 'add', path: '/spec/runtimeClassName', value: runtimeClassName });
  }
  const metadata = pod.metadata;
  const annotations = isRecord(metadata) ? metadata.annotations : undefined;
  if (!isRecord(metadata)) {
    patch.push({ op: has(pod, 'metadata') ? 'replace' : 'add', path: '/metadata', value: { annotations: { [RULE_ANNOTATION]: rule } } });
  } else if (!isRecord(annotations)) {
    patch.push({ op: has(metadata, 'annotations') ? 'replace' : 'add', path: '/metadata/annotations', value: { [RULE_ANNOTATION]: rule } });
  } else if (annotations[RULE_ANNOTATION] !== rule) {
    const op = has(annotations, RULE_ANNOTATION) ? 'replace' : 'add';
    patch.push({ op, path: `/metadata/annotations/${pointerKey(RULE_ANNOTATION)}`, value: rule });
  }
  return patch;
}

/** The images of `pod` that `old` did not have at the same place: changed or added. */
function changedImages(pod: PodView, old: PodView | undefined): PodImage[] {
  const before = new Map((old?.images ?? []).map((image) => [image.path, image.image]));
  return pod.images.filter((image) => before.get(image.path) !== image.image);
}

function auditAnnotations(verdict: Verdict, mode: Policy['mode']): Record<string, string> {
  const annotations: Record<string, string> = {
    decision: verdict.decision.action,
    rule: sourceName(verdict.decision.source),
    outcome: verdict.outcome,
    mode,
  };
  if (verdict.decision.failSafe) annotations['fail-safe'] = 'true';
  return annotations;
}

/** The answer to one review. Waits only when a namespace's labels must be read from the API server. */
export async function admit(request: AdmissionRequest, policy: Policy, cluster: ClusterFacts): Promise<AdmissionResult> {
  if (workloadKind(request)) return admitWorkload(request, policy, cluster);
  if (!isPodRequest(request)) return skipped(request, `not a pod (${request.resource.resource})`);
  const ephemeral = request.subResource === 'ephemeralcontainers';
  if (request.subResource !== undefined && !ephemeral) return skipped(request, `subresource ${request.subResource}`);
  const update = request.operation === 'UPDATE';
  if (!(update || (request.operation === 'CREATE' && !ephemeral))) return skipped(request, `operation ${request.operation}`);

  const parsed = readPod(request.object);
  if (!parsed.ok) return rejected(request, 400, `request.object is not a valid Pod: ${parsed.error}`);
  const pod = parsed.pod;
  const namespaceName = request.namespace || (((request.object as Json).metadata as Json | undefined)?.namespace as string | undefined);
  if (!namespaceName) return rejected(request, 400, 'the pod has no namespace (request.namespace is empty)');
  // A namespace name is a DNS label (at most 63 characters): anything else is not from an apiserver,
  // and must not reach a cluster lookup, a log line or a metric.
  if (typeof namespaceName !== 'string' || !NAMESPACE_NAME.test(namespaceName)) {
    return rejected(request, 400, 'metadata.namespace: not a valid namespace name (a DNS label of at most 63 characters)');
  }

  if (pod.isMirror && isKubelet(request)) {
    // Mirror pods are the apiserver's copies of a kubelet's static pods: never mutate them (docs/kubernetes.md §3).
    // Only a kubelet makes them: any pod creator can write the annotation (with spec.nodeName), so a
    // tenant's "mirror pod" is judged like any other pod.
    return {
      response: { uid: request.uid, allowed: true, auditAnnotations: { decision: 'allow', rule: MIRROR_POD } },
      summary: { ...summary(request, { decision: 'allow', rule: MIRROR_POD, outcome: 'unchanged', reason: 'mirror pod of a kubelet' }), namespace: namespaceName, pod: pod.displayName },
    };
  }

  let changed: PodImage[] = [];
  if (update) {
    // An oldObject that is missing or unreadable has no images to compare with: every image is new,
    // so the update is re-decided rather than waved through.
    const old = readPod(request.oldObject);
    changed = changedImages(pod, old.ok ? old.pod : undefined);
    if (changed.length === 0) return skipped(request, 'update changes no image');
  }

  const namespace = policy.usesNamespaceLabels
    ? await cluster.namespace(namespaceName)
    : { name: namespaceName, labels: undefined, unknownReason: 'not needed' };
  const decision = decide(policy, namespace, pod);
  const verdict = update ? judgeUpdate(policy, decision, pod, changed, ephemeral) : judge(policy, decision, pod, (name) => cluster.runtimeClass(name));
  const rule = sourceName(decision.source);

  const warnings = sanitizeWarnings(verdict.warnings);
  const response: { -readonly [K in keyof AdmissionResponse]: AdmissionResponse[K] } = {
    uid: request.uid,
    allowed: verdict.allowed,
    auditAnnotations: auditAnnotations(verdict, policy.mode),
  };
  if (warnings.length > 0) response.warnings = warnings;
  if (!verdict.allowed) {
    response.status = { code: 403, reason: 'Forbidden', message: capMessage(`sandbox-webhook: ${verdict.denial ?? 'denied'}`) };
  } else if (verdict.setRuntimeClassName !== undefined) {
    const patch = sandboxPatch(request.object as Json, verdict.setRuntimeClassName, rule);
    if (patch.length > 0) {
      response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
      response.patchType = 'JSONPatch';
    }
  }
  return {
    response,
    summary: {
      ...summary(request, { decision: decision.action, rule, outcome: verdict.outcome, reason: verdict.denial ?? decision.reason }),
      namespace: namespaceName,
      pod: pod.displayName,
      denialReason: verdict.denialReason,
    },
  };
}
