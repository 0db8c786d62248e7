// Workload kinds judged by their pod template (docs/design.md): a Deployment,
// StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob or PodTemplate is turned
// into the pod its controller would create (template metadata and spec, generateName from the
// workload's name, the workload's namespace) and that pod is decided by admit(), exactly as the real
// pods will be. So a tenant hears at `kubectl apply` that its pods would be denied, instead of
// finding a ReplicaSet stuck on FailedCreate events.
//
// What the workload's request gets:
//   - pods sandboxed or allowed: nothing (no warning, no patch: no noise);
//   - pods denied, `spec.workloads: warn` (the default): allowed, with one warning per deciding fact
//     (field or image first, so the apiserver's 120-character guidance never cuts it, docs/kubernetes.md §1);
//   - pods denied, `spec.workloads: deny`: 403 naming why.
// A template is never patched: GitOps tools would see the live object drift from the one they
// applied. The check is early feedback, not the boundary: the pods themselves are decided when they
// are created. That is why an UPDATE whose template did not change, or that cannot be compared, is
// only warned about: blocking it would stop a controller scaling down the very workload at fault.

import { readPod, type PodView } from '../policy/pod.js';
import type { Policy } from '../policy/policy.js';
import { admit, rejected, type AdmissionResult, type AdmissionSummary } from './admit.js';
import type { ClusterFacts } from './facts.js';
import type { AdmissionRequest, AdmissionResponse } from './review.js';
import { sanitizeWarnings } from './review.js';
import { isRecord, type Json } from '../json.js';

export interface WorkloadKind {
  readonly group: string;
  readonly resource: string;
  readonly kind: string;
  /** where the pod template sits in the object */
  readonly templatePath: readonly string[];
}

/** The workload resources the webhook judges; the chart registers the same list. */
export const WORKLOAD_KINDS: readonly WorkloadKind[] = [
  { group: 'apps', resource: 'deployments', kind: 'Deployment', templatePath: ['spec', 'template'] },
  { group: 'apps', resource: 'statefulsets', kind: 'StatefulSet', templatePath: ['spec', 'template'] },
  { group: 'apps', resource: 'daemonsets', kind: 'DaemonSet', templatePath: ['spec', 'template'] },
  { group: 'apps', resource: 'replicasets', kind: 'ReplicaSet', templatePath: ['spec', 'template'] },
  { group: '', resource: 'replicationcontrollers', kind: 'ReplicationController', templatePath: ['spec', 'template'] },
  { group: 'batch', resource: 'jobs', kind: 'Job', templatePath: ['spec', 'template'] },
  { group: 'batch', resource: 'cronjobs', kind: 'CronJob', templatePath: ['spec', 'jobTemplate', 'spec', 'template'] },
  { group: '', resource: 'podtemplates', kind: 'PodTemplate', templatePath: ['template'] },
];

/** The workload kind of a request for one of WORKLOAD_KINDS (not a subresource such as scale or status). */
export function workloadKind(request: AdmissionRequest): WorkloadKind | undefined {
  return WORKLOAD_KINDS.find((kind) => kind.group === request.resource.group && kind.resource === request.resource.resource);
}

/** The workload kind of a manifest, by apiVersion and kind (for the CLI). */
export function workloadKindOf(apiVersion: unknown, kind: unknown): WorkloadKind | undefined {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return undefined;
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
  return WORKLOAD_KINDS.find((known) => known.group === group && known.kind === kind);
}


function templateOf(object: unknown, kind: WorkloadKind): unknown {
  let node: unknown = object;
  for (const key of kind.templatePath) node = isRecord(node) ? node[key] : undefined;
  return node;
}

// A name is the tenant's text: it is shortened where a warning must stay under 120 characters.
const NAME_MAX_CHARS = 40;

function shortName(name: string): string {
  return name.length <= NAME_MAX_CHARS ? name : `${name.slice(0, NAME_MAX_CHARS - 3)}...`;
}

/** The pod the workload's controller would create from `template`; undefined when there is no template object. */
export function podFromTemplate(template: unknown, workloadName: string, namespace: string): Json | undefined {
  if (!isRecord(template)) return undefined;
  const metadata = isRecord(template.metadata) ? template.metadata : {};
  const podMetadata: Json = { generateName: `${workloadName}-`, namespace };
  if (metadata.labels !== undefined) podMetadata.labels = metadata.labels;
  if (metadata.annotations !== undefined) podMetadata.annotations = metadata.annotations;
  return { apiVersion: 'v1', kind: 'Pod', metadata: podMetadata, spec: template.spec };
}

/** What a workload's pods would get, beside the workload's own answer. */
export interface WorkloadJudgement {
  readonly result: AdmissionResult;
  /** the template's pod, decided as a CREATE in enforce mode; undefined when the request was not judged */
  readonly pod: { readonly object: Json; readonly result: AdmissionResult; readonly view: PodView } | undefined;
  /** `spec.template.`: what pod paths are prefixed with to name the workload's fields */
  readonly templatePrefix: string;
}

function skipped(request: AdmissionRequest, reason: string): WorkloadJudgement {
  return {
    result: {
      response: { uid: request.uid, allowed: true },
      summary: { namespace: request.namespace ?? '', pod: request.name ?? '', decision: 'none', rule: '', outcome: 'skipped', reason, denialReason: undefined },
    },
    pod: undefined,
    templatePrefix: '',
  };
}

function decidedBy(summary: AdmissionSummary): string {
  return summary.rule === 'default' ? 'spec.defaultAction' : `rule "${summary.rule}"`;
}

/**
 * The facts that make the template's pod denied, each named as the workload's field or image:
 * `spec.template.spec.hostNetwork`, `spec.template.spec.containers[0].image "evil.example.com/x:1"`.
 */
export function denialFacts(
  policy: Policy,
  view: PodView,
  summary: AdmissionSummary,
  namespace: string,
  prefix: string,
  runtimeClass: ClusterFacts['runtimeClass'],
): string[] {
  const facts: string[] = [];
  if (summary.decision === 'deny') {
    const rule = policy.rules.find((r) => r.name === summary.rule);
    const patterns = [...(rule?.match.anyImage ?? []), ...(rule?.match.allImages ?? [])];
    for (const image of view.images) {
      const parsed = image.parsed;
      if (parsed.ok ? patterns.some((pattern) => pattern.matches(parsed.ref)) : patterns.length > 0) {
        // An image that cannot be parsed may match: the rule was chosen fail-safe because of it.
        facts.push(`${prefix}${image.path} "${image.image}"${parsed.ok ? '' : ' (unparsable)'}`);
      }
    }
    if (facts.length === 0) facts.push(`namespace "${namespace}"`);
    return facts;
  }
  if (summary.decision !== 'sandbox') return facts;
  if (policy.incompatible === 'deny') {
    for (const incompatible of view.incompatibilities) facts.push(`${prefix}${incompatible}`);
  }
  const current = view.runtimeClassName;
  if (current !== undefined && policy.onConflict === 'deny' && !policy.acceptedRuntimeClasses.has(current)) {
    facts.push(`${prefix}spec.runtimeClassName "${current}"`);
  }
  if (facts.length > 0) return facts;
  // What remains is a fact about the cluster: the RuntimeClass is missing, or its scheduling
  // conflicts with the template's nodeSelector.
  const target = current !== undefined && policy.acceptedRuntimeClasses.has(current) ? current : (policy.rules.find((r) => r.name === summary.rule)?.runtimeClassName ?? policy.runtimeClassName);
  facts.push(runtimeClass(target).state === 'missing' ? `RuntimeClass "${target}" does not exist` : `${prefix}spec.nodeSelector`);
  return facts;
}

const FACT_WARNINGS_MAX = 5;

/** The workload's answer, and what its pods would get: the decision the CLI shows. */
export async function judgeWorkload(request: AdmissionRequest, policy: Policy, cluster: ClusterFacts): Promise<WorkloadJudgement> {
  const kind = workloadKind(request);
  if (!kind) return skipped(request, `not a workload (${request.resource.resource})`);
  if (request.subResource !== undefined) return skipped(request, `subresource ${request.subResource}`);
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return skipped(request, `operation ${request.operation}`);
  const templatePrefix = `${kind.templatePath.join('.')}.`;
  const object = isRecord(request.object) ? request.object : {};
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  const workloadName = String(metadata.name || metadata.generateName || request.name || kind.resource);
  const namespace = request.namespace || (typeof metadata.namespace === 'string' ? metadata.namespace : '');
  const label = `${kind.kind} ${shortName(workloadName)}`;
  const judged = (result: AdmissionResult): WorkloadJudgement => ({ result, pod: undefined, templatePrefix });
  if (!namespace) return judged(rejected(request, 400, `${label} has no namespace (request.namespace is empty)`));

  const template = templateOf(request.object, kind);
  const podObject = podFromTemplate(template, workloadName, namespace);
  const view = podObject ? readPod(podObject) : undefined;
  if (!podObject || !view?.ok) {
    // The apiserver validates the workload after mutating admission and rejects a broken template;
    // the controller could not create pods from it either. Said plainly, never skipped.
    const why = !podObject ? `${templatePrefix.slice(0, -1)}: expected an object` : `${templatePrefix}${view && !view.ok ? view.error : ''}`;
    return judged(rejected(request, 400, `${label}: the pod template is not a valid pod template: ${why}`));
  }

  const podRequest: AdmissionRequest = {
    uid: request.uid,
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    subResource: undefined,
    name: undefined,
    namespace,
    operation: 'CREATE',
    object: podObject,
    oldObject: undefined,
    dryRun: request.dryRun,
    // Pods are created by the workload's controller, never by a kubelet: a template cannot pass for a mirror pod.
    userInfo: { username: `system:serviceaccount:kube-system:${kind.resource}-controller`, groups: [] },
  };
  // Judged as enforcement would judge it: in audit mode too, the user is told what would be denied.
  const podResult = await admit(podRequest, policy.mode === 'enforce' ? policy : { ...policy, mode: 'enforce' }, cluster);
  const pod = { object: podObject, result: podResult, view: view.pod };
  const summary = podResult.summary;
  // The pod's summary, told of the workload: its decision and rule are the workload's.
  const base = { ...summary, namespace, pod: `${kind.kind}/${workloadName}` };

  if (podResult.response.allowed) {
    return {
      result: {
        response: { uid: request.uid, allowed: true, auditAnnotations: { decision: summary.decision, rule: summary.rule, outcome: 'unchanged', mode: policy.mode } },
        summary: { ...base, outcome: 'unchanged', reason: `its pods would be admitted (${summary.reason})` },
      },
      pod,
      templatePrefix,
    };
  }
  if (summary.decision === 'none') {
    // The template's pod was not decided (an error the policy did not reach): pass its reason on.
    const message = podResult.response.status?.message.replace(/^sandbox-webhook: /, '') ?? 'not decided';
    return { result: rejected(request, podResult.response.status?.code ?? 400, `${label}: ${message}`), pod, templatePrefix };
  }

  const facts = denialFacts(policy, view.pod, summary, namespace, templatePrefix, (name) => cluster.runtimeClass(name));
  const by = decidedBy(summary);
  // kubectl prints a warning beside the object it came with: the fact and the rule are what it lacks.
  const warnings = facts.slice(0, FACT_WARNINGS_MAX).map((fact) => `sandbox-webhook: ${fact}: its pods would be denied by ${by}`);
  if (facts.length > FACT_WARNINGS_MAX) warnings.push(`sandbox-webhook: and ${facts.length - FACT_WARNINGS_MAX} more reasons its pods would be denied`);
  const podDenial = (podResult.response.status?.message ?? '').replace(/^sandbox-webhook: /, '');
  const oldObject = (request as AdmissionRequest & { readonly oldObject?: unknown }).oldObject;
  const templateChanged = request.operation === 'CREATE' || (oldObject !== undefined && !sameJson(templateOf(oldObject, kind), template));
  const deny = policy.workloads === 'deny' && policy.mode === 'enforce' && templateChanged;
  const response: AdmissionResponse = deny
    ? {
        uid: request.uid,
        allowed: false,
        status: { code: 403, reason: 'Forbidden', message: `sandbox-webhook: ${label} denied (spec.workloads: deny): its pods would be denied: ${podDenial}` },
        warnings: sanitizeWarnings(warnings),
        auditAnnotations: { decision: summary.decision, rule: summary.rule, outcome: 'denied', mode: policy.mode },
      }
    : {
        uid: request.uid,
        allowed: true,
        warnings: sanitizeWarnings(warnings),
        auditAnnotations: { decision: summary.decision, rule: summary.rule, outcome: 'warned', mode: policy.mode },
      };
  return {
    result: { response, summary: { ...base, outcome: deny ? 'denied' : 'audited', reason: `its pods would be denied: ${podDenial}` } },
    pod,
    templatePrefix,
  };
}

/** Whether two parsed JSON values are equal (key order aside). */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((item, i) => sameJson(item, b[i]));
  if (!isRecord(a) || !isRecord(b)) return false;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => Object.prototype.hasOwnProperty.call(b, key) && sameJson(a[key], b[key]));
}

/** The answer to a workload's review (admit() hands these requests here). */
export async function admitWorkload(request: AdmissionRequest, policy: Policy, cluster: ClusterFacts): Promise<AdmissionResult> {
  return (await judgeWorkload(request, policy, cluster)).result;
}
