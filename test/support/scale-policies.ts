// Policies the way a hosting provider grows them, generated: 1 to 10,000 rules, or one deny rule with
// 1 to 10,000 image patterns. The bench times the engine over them; the rule-index tests hold the
// indexed decisions to a scan over them.

import type { Json } from './review.js';

const pad = (i: number): string => String(i).padStart(4, '0');

/**
 * `size` rules the way a hosting provider grows a policy: the system exception, a blocked-registry
 * deny rule, then one rule per tenant namespace and one per registry path of a team, half each. The
 * fixtures' tenant (tenant-0042, registry.example.com/team-0042/) is listed last, so that a policy
 * scanned rule by rule would pay for all the others first.
 */
export function rulesPolicy(size: number): Json {
  const rules: Json[] = [{ name: 'system', match: { namespaces: ['kube-system', 'kube-public', 'kube-node-lease'] }, action: 'allow' }];
  if (size > 1) rules.push({ name: 'blocked-registries', match: { anyImage: ['evil.example.net/**'] }, action: 'deny' });
  const perKind = Math.max(0, size - rules.length) / 2;
  const namespaceRules = Math.ceil(perKind);
  const imageRules = Math.floor(perKind);
  for (let i = namespaceRules - 1; i >= 0; i--) {
    rules.push({
      name: `tenant-${pad(i)}`,
      match: { namespaces: [`tenant-${pad(i)}`] },
      action: 'sandbox',
      ...(i % 10 === 9 ? { runtimeClassName: 'kata' } : {}),
    });
  }
  for (let i = imageRules - 1; i >= 0; i--) {
    rules.push({ name: `team-${pad(i)}-images`, match: { anyImage: [`registry.example.com/team-${pad(i)}/**`] }, action: 'sandbox' });
  }
  return document(rules);
}

/**
 * One deny rule with `size` image patterns (a blocked-registry list: whole registries, repository
 * paths, tag globs), the blocked registry of the `denied` fixture last, then a tenant catch-all.
 */
export function patternsPolicy(size: number): Json {
  const patterns: string[] = [];
  for (let i = 0; i < size - 1; i++) {
    if (i % 3 === 0) patterns.push(`mirror-${pad(i)}.example.org/**`);
    else if (i % 3 === 1) patterns.push(`registry.example.com/quarantine/team-${pad(i)}/**`);
    else patterns.push(`docker.io/untrusted-${pad(i)}/*:latest`);
  }
  patterns.push('evil.example.net/**');
  return document([
    { name: 'system', match: { namespaces: ['kube-system', 'kube-public', 'kube-node-lease'] }, action: 'allow' },
    { name: 'blocked-registries', match: { anyImage: patterns }, action: 'deny' },
    { name: 'tenants', match: { namespaces: ['tenant-*'] }, action: 'sandbox' },
  ]);
}

function document(rules: Json[]): Json {
  return {
    apiVersion: 'sandbox-webhook.io/v1alpha1',
    kind: 'SandboxPolicy',
    spec: { runtimeClassName: 'gvisor', acceptedRuntimeClasses: ['gvisor', 'kata'], defaultAction: 'sandbox', rules },
  };
}
