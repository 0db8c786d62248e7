// The running-pod audit: every pod that has not ended, judged by the policy in force as if it were
// created now (the same admit() the webhook answers with), and classified:
//   sandboxed  it runs under an accepted RuntimeClass, and the policy would not deny it;
//   allowed    it runs unsandboxed and a rule (or spec.defaultAction allow) lets it;
//   violation  it runs unsandboxed where the policy would sandbox it, or the policy would deny it:
//              admitted before the webhook was installed, while it was down under failurePolicy
//              Ignore, in a namespace the webhook configuration excludes, or under an older policy.
// Pods are read page by page (cluster/pods.ts): a scan holds one page and the counts, never the list.

import { admit } from '../admission/admit.js';
import type { ClusterFacts } from '../admission/facts.js';
import type { AdmissionRequest } from '../admission/review.js';
import type { Policy } from '../policy/policy.js';
import { listPages, NOT_TERMINATED, PODS_PATH, type ListOptions } from '../cluster/pods.js';
import type { KubeApi } from '../cluster/kube-api.js';
import { isRecord, type Json } from '../json.js';

export const POD_STATES = ['sandboxed', 'allowed', 'violation'] as const;
export type PodState = (typeof POD_STATES)[number];

export interface PodAudit {
  readonly namespace: string;
  readonly name: string;
  readonly state: PodState;
  /** the rule that decides the pod today, `default` for spec.defaultAction */
  readonly rule: string;
  /** the class it runs with, or undefined (the node's default runtime) */
  readonly runtimeClassName: string | undefined;
  readonly reason: string;
}


function by(rule: string): string {
  return rule === 'default' ? 'spec.defaultAction' : `rule "${rule}"`;
}

/** One running pod, judged as a CREATE of the pod as it is now. */
export async function auditPod(pod: Json, policy: Policy, cluster: ClusterFacts): Promise<PodAudit> {
  const metadata = isRecord(pod.metadata) ? pod.metadata : {};
  const spec = isRecord(pod.spec) ? pod.spec : {};
  const namespace = typeof metadata.namespace === 'string' ? metadata.namespace : '';
  const name = typeof metadata.name === 'string' ? metadata.name : '';
  const runtimeClassName = typeof spec.runtimeClassName === 'string' && spec.runtimeClassName !== '' ? spec.runtimeClassName : undefined;
  const request: AdmissionRequest = {
    uid: `audit-${namespace}-${name}`,
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    subResource: undefined,
    name,
    namespace,
    operation: 'CREATE',
    object: pod,
    oldObject: undefined,
    dryRun: true,
    // Who created the pod is not recorded on it: judged as any creator, never as a kubelet.
    userInfo: { username: 'system:serviceaccount:sandbox-webhook:audit', groups: [] },
  };
  // Judged as enforcement would judge it, whatever the policy's mode: the audit reports what is wrong.
  const { response, summary } = await admit(request, policy.mode === 'enforce' ? policy : { ...policy, mode: 'enforce' }, cluster);
  const audit = (state: PodState, reason: string): PodAudit => ({ namespace, name, state, rule: summary.rule || '-', runtimeClassName, reason });
  const denial = (response.status?.message ?? '').replace(/^sandbox-webhook: /, '');
  if (summary.decision === 'none') return audit('violation', `cannot be judged: ${denial || summary.reason}`);
  if (summary.decision === 'deny') return audit('violation', `would be denied by ${by(summary.rule)}`);
  if (runtimeClassName !== undefined && policy.acceptedRuntimeClasses.has(runtimeClassName)) {
    return audit('sandboxed', `runtimeClassName "${runtimeClassName}"`);
  }
  if (summary.decision === 'allow') {
    return audit('allowed', `unsandboxed${runtimeClassName ? ` (runtimeClassName "${runtimeClassName}")` : ''}, allowed by ${by(summary.rule)}`);
  }
  const runs = runtimeClassName ? `runs with runtimeClassName "${runtimeClassName}"` : 'runs unsandboxed';
  return audit('violation', response.allowed ? `${runs}; ${by(summary.rule)} would sandbox it` : `${runs}; would be denied: ${denial}`);
}

export interface ScanStats {
  readonly pods: number;
  /** list requests sent to the API server (one per page) */
  readonly requests: number;
  readonly durationMs: number;
}

export interface ScanOptions extends Pick<ListOptions, 'pageSize' | 'pageTimeoutMs' | 'signal'> {
  readonly api: Pick<KubeApi, 'get'>;
  readonly policy: Policy;
  readonly cluster: ClusterFacts;
  /** called for every pod, in the API server's order (namespace, then name) */
  readonly onPod: (audit: PodAudit) => void;
  readonly now?: () => number;
}

/** Lists every pod that has not ended, page by page, and audits each. Throws when a page cannot be read. */
export async function scanPods(options: ScanOptions): Promise<ScanStats> {
  const now = options.now ?? (() => performance.now());
  const started = now();
  let pods = 0;
  let requests = 0;
  const pages = listPages(options.api, PODS_PATH, {
    fieldSelector: NOT_TERMINATED,
    ...(options.pageSize ? { pageSize: options.pageSize } : {}),
    ...(options.pageTimeoutMs ? { pageTimeoutMs: options.pageTimeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  for await (const page of pages) {
    requests += 1;
    for (const pod of page) {
      options.onPod(await auditPod(pod, options.policy, options.cluster));
      pods += 1;
    }
  }
  return { pods, requests, durationMs: Math.round(now() - started) };
}
