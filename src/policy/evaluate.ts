// The pure decision: (policy, pod, namespace facts, RuntimeClass facts) -> verdict with reasons.
// No I/O, no clock, no logger. The table it implements is DESIGN.md "What a decision does".

import type { Action, Policy, Rule } from './policy.js';
import type { PodImage, PodView } from './pod.js';
import { describeSelector, type Labels } from './selector.js';
import { candidateRules, firstMatch, type RuleIndex } from './rule-index.js';

export interface NamespaceFacts {
  readonly name: string;
  /** undefined when the labels cannot be known: selectors are then decided fail-safe */
  readonly labels: Labels | undefined;
  readonly unknownReason?: string;
}

export type RuntimeClassFact =
  | {
      readonly state: 'present';
      readonly handler: string;
      /** undefined when the class has no `scheduling` at all */
      readonly nodeSelector: Labels | undefined;
    }
  | { readonly state: 'missing' }
  | { readonly state: 'unknown'; readonly reason: string };

export type RuntimeClassLookup = (name: string) => RuntimeClassFact;

export interface Decision {
  readonly action: Action;
  /** the deciding rule's name, or `default` */
  readonly rule: string;
  readonly runtimeClassName: string;
  /** why, in words: what matched */
  readonly reason: string;
  /** set when unknown facts (namespace labels, unparsable images) made the webhook pick the safer outcome */
  readonly failSafe: string | undefined;
}

export type Outcome = 'patched' | 'unchanged' | 'denied' | 'audited';

export interface Verdict {
  readonly decision: Decision;
  readonly allowed: boolean;
  /** the runtimeClassName to write into the pod (enforce mode only) */
  readonly setRuntimeClassName: string | undefined;
  /** the denial message (HTTP 403 in the response status) */
  readonly denial: string | undefined;
  /** each under 120 characters, for the kubectl user */
  readonly warnings: readonly string[];
  readonly outcome: Outcome;
}

type Tri = 0 | 1 | 2; // no | yes | unknown
const NO: Tri = 0;
const YES: Tri = 1;
const UNKNOWN: Tri = 2;

// Isolation order for the fail-safe choice: a pod never gets less isolation than it would with
// every fact known (DESIGN.md), so among the outcomes still possible the strictest wins.
const STRICTNESS: Record<Action, number> = { allow: 0, sandbox: 1, deny: 2 };

function imageMatches(index: RuleIndex, image: PodImage, rule: Rule, field: 'anyImage' | 'allImages'): Tri {
  if (!image.parsed.ok) return UNKNOWN;
  const patterns = rule.match[field];
  return patterns && firstMatch(index, patterns, image.parsed.ref) ? YES : NO;
}

function matchRule(index: RuleIndex, rule: Rule, namespace: NamespaceFacts, pod: PodView): Tri {
  const { match } = rule;
  let result: Tri = YES;
  if (match.namespaces && !match.namespaces.some((glob) => glob.matches(namespace.name))) return NO;
  if (match.podSelector && !match.podSelector.matches(pod.labels)) return NO;
  if (match.anyImage) {
    let any: Tri = NO;
    for (const image of pod.images) {
      const m = imageMatches(index, image, rule, 'anyImage');
      if (m === YES) {
        any = YES;
        break;
      }
      if (m === UNKNOWN) any = UNKNOWN;
    }
    if (any === NO) return NO;
    if (any === UNKNOWN) result = UNKNOWN;
  }
  if (match.allImages) {
    // A pod without images proves nothing: it does not satisfy "every image is trusted".
    if (pod.images.length === 0) return NO;
    for (const image of pod.images) {
      const m = imageMatches(index, image, rule, 'allImages');
      if (m === NO) return NO;
      if (m === UNKNOWN) result = UNKNOWN;
    }
  }
  if (match.namespaceSelector) {
    if (namespace.labels === undefined) result = UNKNOWN;
    else if (!match.namespaceSelector.matches(namespace.labels)) return NO;
  }
  return result;
}

function explainMatch(index: RuleIndex, rule: Rule, namespace: NamespaceFacts, pod: PodView): string {
  const { match } = rule;
  const parts: string[] = [];
  if (match.namespaces) {
    const glob = match.namespaces.find((g) => g.matches(namespace.name));
    parts.push(`namespace "${namespace.name}" matches "${glob?.source ?? '?'}"`);
  }
  if (match.namespaceSelector) {
    parts.push(`namespace labels match ${describeSelector(match.namespaceSelector.selector)}`);
  }
  if (match.podSelector) parts.push(`pod labels match ${describeSelector(match.podSelector.selector)}`);
  if (match.anyImage) {
    const hit = pod.images.find((image) => imageMatches(index, image, rule, 'anyImage') === YES);
    if (hit && hit.parsed.ok) {
      const pattern = firstMatch(index, match.anyImage, hit.parsed.ref);
      parts.push(`image "${hit.parsed.ref.normalized}" (${hit.path}) matches "${pattern?.source ?? '?'}"`);
    }
  }
  if (match.allImages) parts.push(`all ${pod.images.length} images match ${match.allImages.map((p) => p.source).join(', ')}`);
  return parts.length === 0 ? 'the rule matches every pod' : parts.join(', ');
}

function unknownFacts(rule: Rule, namespace: NamespaceFacts, pod: PodView): string {
  const facts: string[] = [];
  if (rule.match.namespaceSelector && namespace.labels === undefined) {
    facts.push(`labels of namespace "${namespace.name}" are unknown (${namespace.unknownReason ?? 'not available'})`);
  }
  if (rule.match.anyImage || rule.match.allImages) {
    for (const image of pod.images) {
      if (!image.parsed.ok) facts.push(`image "${image.image}" (${image.path}) cannot be parsed: ${image.parsed.reason}`);
    }
  }
  return facts.join('; ');
}

/** First matching rule decides; where a rule's match cannot be known, the strictest possible outcome wins. */
export function decide(policy: Policy, namespace: NamespaceFacts, pod: PodView): Decision {
  let chosen: Rule | undefined;
  let certain = false;
  let uncertainty: string | undefined;
  for (const rule of candidateRules(policy.index, namespace.name, pod)) {
    const m = matchRule(policy.index, rule, namespace, pod);
    if (m === NO) continue;
    if (!chosen || STRICTNESS[rule.action] > STRICTNESS[chosen.action]) chosen = rule;
    if (m === YES) {
      certain = true;
      break;
    }
    uncertainty ??= unknownFacts(rule, namespace, pod);
  }
  const failSafe = uncertainty ? `decided fail-safe: ${uncertainty}` : undefined;
  // Without a certain match the default action is a possible outcome too.
  if (!chosen || (!certain && STRICTNESS[policy.defaultAction] > STRICTNESS[chosen.action])) {
    return {
      action: policy.defaultAction,
      rule: 'default',
      runtimeClassName: policy.runtimeClassName,
      reason: `no rule matched; spec.defaultAction is ${policy.defaultAction}`,
      failSafe,
    };
  }
  const sure = certain && matchRule(policy.index, chosen, namespace, pod) === YES;
  return {
    action: chosen.action,
    rule: chosen.name,
    runtimeClassName: chosen.runtimeClassName,
    reason: sure ? explainMatch(policy.index, chosen, namespace, pod) : `rule "${chosen.name}" may match`,
    failSafe,
  };
}

const WARNING_PREFIX = 'sandbox-webhook: ';

function enforceVerdict(
  policy: Policy,
  decision: Decision,
  pod: PodView,
  runtimeClass: RuntimeClassLookup,
): Omit<Verdict, 'decision' | 'outcome' | 'warnings'> & { warnings: string[]; changes: boolean } {
  const warnings: string[] = [];

  if (decision.action === 'allow') {
    return { allowed: true, setRuntimeClassName: undefined, denial: undefined, warnings: [], changes: false };
  }
  if (decision.action === 'deny') {
    const who = decision.rule === 'default' ? 'spec.defaultAction' : `rule "${decision.rule}"`;
    return {
      allowed: false,
      setRuntimeClassName: undefined,
      denial: `pod ${pod.displayName} denied by ${who}: ${decision.reason}${decision.failSafe ? `; ${decision.failSafe}` : ''}`,
      warnings: [...warnings, `${WARNING_PREFIX}pod denied by ${who}`],
      changes: true,
    };
  }

  const target = decision.runtimeClassName;
  const why = decision.rule === 'default' ? 'spec.defaultAction sandbox' : `rule "${decision.rule}"`;
  const problems: string[] = [];
  if (pod.incompatibilities.length > 0) {
    if (policy.incompatible === 'deny') {
      problems.push(
        `the pod must run in the ${target} sandbox but uses ${pod.incompatibilities.join(', ')}, which the sandbox does not support; remove them or ask the cluster admin for an exception rule`,
      );
    } else {
      warnings.push(`${WARNING_PREFIX}sandboxed pod uses ${pod.incompatibilities.join(', ')}; it may not work under ${target}`);
    }
  }

  let setRuntimeClassName: string | undefined;
  const current = pod.runtimeClassName;
  if (current === undefined) {
    setRuntimeClassName = target;
    warnings.push(`${WARNING_PREFIX}runtimeClassName set to "${target}" by ${why}`);
  } else if (current !== target && !policy.acceptedRuntimeClasses.has(current)) {
    if (policy.onConflict === 'deny') {
      const accepted = [...new Set([target, ...policy.acceptedRuntimeClasses])].join(', ');
      problems.push(
        `the pod asks for runtimeClassName "${current}" but must run sandboxed (accepted: ${accepted}); remove spec.runtimeClassName or set it to "${target}"`,
      );
    } else {
      setRuntimeClassName = target;
      warnings.push(`${WARNING_PREFIX}runtimeClassName "${current}" replaced by "${target}" (${why})`);
    }
  }

  const finalClass = setRuntimeClassName ?? current ?? target;
  const fact = runtimeClass(finalClass);
  if (fact.state === 'missing') {
    problems.push(
      `RuntimeClass "${finalClass}" does not exist in the cluster, so the pod cannot be sandboxed; a cluster admin must create it (kubectl get runtimeclass lists those that exist) or change runtimeClassName in the SandboxPolicy`,
    );
  } else if (fact.state === 'present') {
    if (fact.nodeSelector === undefined) {
      warnings.push(`${WARNING_PREFIX}RuntimeClass "${finalClass}" has no scheduling: the pod may land on a node without ${fact.handler}`);
    } else {
      for (const [key, value] of Object.entries(fact.nodeSelector)) {
        const podValue = pod.nodeSelector[key];
        if (podValue !== undefined && podValue !== value) {
          problems.push(
            `the pod's nodeSelector ${key}=${podValue} conflicts with RuntimeClass "${finalClass}" scheduling.nodeSelector ${key}=${value}; remove ${key} from the pod's nodeSelector (the RuntimeClass sets it)`,
          );
        }
      }
    }
  }

  if (problems.length > 0) {
    return {
      allowed: false,
      setRuntimeClassName: undefined,
      denial: `pod ${pod.displayName} denied by ${why} (${decision.reason}): ${problems.join('; ')}`,
      warnings: [...warnings.filter((w) => !w.includes('runtimeClassName')), `${WARNING_PREFIX}pod denied by ${why}`],
      changes: true,
    };
  }
  return { allowed: true, setRuntimeClassName, denial: undefined, warnings, changes: setRuntimeClassName !== undefined };
}

/** Applies the decision to the pod as it is: patch, accept, or deny (DESIGN.md decision table). */
export function judge(policy: Policy, decision: Decision, pod: PodView, runtimeClass: RuntimeClassLookup): Verdict {
  const enforced = enforceVerdict(policy, decision, pod, runtimeClass);
  if (decision.failSafe && enforced.changes) {
    // Say so when unknown facts changed the pod's fate; an unchanged pod needs no note.
    enforced.warnings.push(`${WARNING_PREFIX}namespace labels or an image unknown; ${decision.action} chosen fail-safe`);
  }
  if (policy.mode === 'enforce') {
    const outcome: Outcome = !enforced.allowed ? 'denied' : enforced.setRuntimeClassName ? 'patched' : 'unchanged';
    return { decision, allowed: enforced.allowed, setRuntimeClassName: enforced.setRuntimeClassName, denial: enforced.denial, warnings: enforced.warnings, outcome };
  }
  // Audit mode never patches or denies: it tells the user what enforcement would have done.
  if (!enforced.changes && enforced.warnings.length === 0) {
    return { decision, allowed: true, setRuntimeClassName: undefined, denial: undefined, warnings: [], outcome: 'unchanged' };
  }
  const finding = !enforced.allowed
    ? `audit: would deny (${decision.rule === 'default' ? 'spec.defaultAction' : `rule "${decision.rule}"`})`
    : enforced.setRuntimeClassName
      ? `audit: would set runtimeClassName "${enforced.setRuntimeClassName}" (rule "${decision.rule}")`
      : `audit: ${decision.action} (rule "${decision.rule}")`;
  const details = enforced.warnings.map((w) => w.replace(WARNING_PREFIX, `${WARNING_PREFIX}audit: `));
  const denialDetail = enforced.denial ? [`${WARNING_PREFIX}audit: ${enforced.denial}`] : [];
  return {
    decision,
    allowed: true,
    setRuntimeClassName: undefined,
    denial: undefined,
    warnings: [`${WARNING_PREFIX}${finding}`, ...denialDetail, ...details.filter((w) => !w.includes('pod denied by'))],
    outcome: enforced.changes ? 'audited' : 'unchanged',
  };
}
