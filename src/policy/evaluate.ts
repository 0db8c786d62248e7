// The pure decision: (policy, pod, namespace facts, RuntimeClass facts) -> verdict with reasons.
// No I/O, no clock, no logger. The table it implements is docs/design.md.

import type { Action, NamespaceGlob, Policy, Rule } from './policy.js';
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

/** Who decided: a rule of the policy, or spec.defaultAction when no rule matched. */
export type DecisionSource = { readonly kind: 'rule'; readonly name: string } | { readonly kind: 'default' };

/** The name users see for a source (the `rule` audit annotation, logs, metrics): rule names cannot be `default`. */
export function sourceName(source: DecisionSource): string {
  return source.kind === 'rule' ? source.name : 'default';
}

export interface FailSafe {
  /** the unknown facts, in full */
  readonly reason: string;
  /** the first of them in a few words, for a warning */
  readonly fact: string;
}

export interface Decision {
  readonly action: Action;
  readonly source: DecisionSource;
  readonly runtimeClassName: string;
  /** why, in words: what matched */
  readonly reason: string;
  /** the deciding fact in a few words, for a warning: `image "docker.io/x:1" (spec.containers[0].image)` */
  readonly fact: string;
  /** set when unknown facts (namespace labels, unparsable images) made the webhook pick the safer outcome */
  readonly failSafe: FailSafe | undefined;
}

/** Why a pod was denied, as a closed set (a metric label). */
export const DENIAL_REASONS = [
  'deny_rule',
  'incompatible',
  'runtime_class_conflict',
  'runtime_class_missing',
  'node_selector_conflict',
  'image_update',
  'ephemeral_container',
  'invalid_request',
] as const;
export type DenialReason = (typeof DENIAL_REASONS)[number];

export type Outcome = 'patched' | 'unchanged' | 'denied' | 'audited';

export interface Verdict {
  readonly decision: Decision;
  readonly allowed: boolean;
  /** the runtimeClassName to write into the pod (enforce mode only) */
  readonly setRuntimeClassName: string | undefined;
  /** the denial message (HTTP 403 in the response status); in audit mode, what enforcement would deny with (logged) */
  readonly denial: string | undefined;
  /** why it was denied (the first problem found); undefined when allowed */
  readonly denialReason: DenialReason | undefined;
  /** each leads with the deciding fact, for the kubectl user (admission/review.ts caps them) */
  readonly warnings: readonly string[];
  readonly outcome: Outcome;
}

type Tri = 0 | 1 | 2; // no | yes | unknown
const NO: Tri = 0;
const YES: Tri = 1;
const UNKNOWN: Tri = 2;

// Isolation order for the fail-safe choice: a pod never gets less isolation than it would with
// every fact known (docs/design.md), so among the outcomes still possible the strictest wins.
const STRICTNESS: Record<Action, number> = { allow: 0, sandbox: 1, deny: 2 };

function imageMatches(index: RuleIndex, image: PodImage, rule: Rule, field: 'anyImage' | 'allImages'): Tri {
  if (!image.parsed.ok) return UNKNOWN;
  const patterns = rule.match[field];
  return patterns && firstMatch(index, patterns, image.parsed.ref) ? YES : NO;
}

function anyGlobMatches(globs: readonly NamespaceGlob[], name: string): boolean {
  for (const glob of globs) if (glob.matches(name)) return true;
  return false;
}

function matchRule(index: RuleIndex, rule: Rule, namespace: NamespaceFacts, pod: PodView): Tri {
  const { match } = rule;
  let result: Tri = YES;
  if (match.namespaces && !anyGlobMatches(match.namespaces, namespace.name)) return NO;
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

/** `a, b, c and 2 more`: lists in messages name a few items, however many there are. */
export function few(items: readonly string[], max = 10): string {
  if (items.length <= max) return items.join(', ');
  return `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

// Warnings lead with the deciding fact and name the rule, within the apiserver's 120 characters
// (docs/kubernetes.md §1): each value quoted in one (image, class, rule, namespace) is cut to this
// length, which leaves room for two of them, a field and the words around them. The denial message
// has them whole.
const WARNING_VALUE_MAX_CHARS = 24;
const WARNING_IMAGE_MAX_CHARS = 36;

function cut(value: string, max = WARNING_VALUE_MAX_CHARS): string {
  return value.length > max ? `${value.slice(0, max - 3)}...` : value;
}

function quoted(value: string, max = WARNING_VALUE_MAX_CHARS): string {
  return `"${cut(value, max)}"`;
}

/** `image "docker.io/library/nginx:1" (containers[0])`: the path without `spec.` and `.image`. */
function imageFact(image: PodImage): string {
  const where = image.path.replace(/^spec\./, '').replace(/\.image(\.reference)?$/, '');
  return `image ${quoted(image.parsed.ok ? image.parsed.ref.normalized : image.image, WARNING_IMAGE_MAX_CHARS)} (${where})`;
}

function explainMatch(index: RuleIndex, rule: Rule, namespace: NamespaceFacts, pod: PodView): { reason: string; fact: string } {
  const { match } = rule;
  const parts: string[] = [];
  let fact: string | undefined;
  if (match.anyImage) {
    const hit = pod.images.find((image) => imageMatches(index, image, rule, 'anyImage') === YES);
    if (hit && hit.parsed.ok) {
      const pattern = firstMatch(index, match.anyImage, hit.parsed.ref);
      parts.push(`image "${hit.parsed.ref.normalized}" (${hit.path}) matches "${pattern?.source ?? '?'}"`);
      fact = imageFact(hit);
    }
  }
  if (match.allImages) {
    parts.push(`all ${pod.images.length} images match ${few(match.allImages.map((p) => `"${p.source}"`))}`);
    const first = pod.images[0];
    fact ??= first === undefined ? undefined : `${imageFact(first)} and every other image`;
  }
  if (match.namespaces) {
    const glob = match.namespaces.find((g) => g.matches(namespace.name));
    parts.push(`namespace "${namespace.name}" matches "${glob?.source ?? '?'}"`);
    fact ??= `namespace ${quoted(namespace.name)}`;
  }
  if (match.namespaceSelector) {
    const labels = describeSelector(match.namespaceSelector.selector);
    parts.push(`namespace labels match ${labels}`);
    fact ??= `namespace labels ${quoted(labels)}`;
  }
  if (match.podSelector) {
    const labels = describeSelector(match.podSelector.selector);
    parts.push(`pod labels match ${labels}`);
    fact ??= `pod labels ${quoted(labels)}`;
  }
  return parts.length === 0 ? { reason: 'the rule matches every pod', fact: 'every pod' } : { reason: parts.join(', '), fact: fact ?? 'every pod' };
}

function unknownFacts(rule: Rule, namespace: NamespaceFacts, pod: PodView): FailSafe | undefined {
  const facts: string[] = [];
  let fact: string | undefined;
  if (rule.match.namespaceSelector && namespace.labels === undefined) {
    facts.push(`labels of namespace "${namespace.name}" are unknown (${namespace.unknownReason ?? 'not available'})`);
    fact = `labels of namespace ${quoted(namespace.name)} unknown`;
  }
  if (rule.match.anyImage || rule.match.allImages) {
    const unparsable = pod.images.filter((image) => !image.parsed.ok);
    facts.push(...unparsable.slice(0, 3).map((image) => `image "${image.image}" (${image.path}) cannot be parsed: ${image.parsed.ok ? '' : image.parsed.reason}`));
    if (unparsable.length > 3) facts.push(`and ${unparsable.length - 3} more unparsable images`);
    const first = unparsable[0];
    if (first) fact ??= `image ${quoted(first.image, WARNING_IMAGE_MAX_CHARS)} unparsable`;
  }
  return fact === undefined ? undefined : { reason: `decided fail-safe: ${facts.join('; ')}`, fact };
}

/** First matching rule decides; where a rule's match cannot be known, the strictest possible outcome wins. */
export function decide(policy: Policy, namespace: NamespaceFacts, pod: PodView): Decision {
  let chosen: Rule | undefined;
  /** whether the chosen rule itself surely matches (not only may) */
  let chosenSure = false;
  let certain = false;
  let failSafe: FailSafe | undefined;
  for (const rule of candidateRules(policy.index, namespace.name, pod)) {
    const m = matchRule(policy.index, rule, namespace, pod);
    if (m === NO) continue;
    // An allow rule that only may match never decides: the pod would take the action of a later
    // rule or the default if it did not match, and allow is the least strict of them, so the action
    // is the same; but an admitted unsandboxed pod is then always decided by a rule that surely
    // matched it, which is what the audit annotation names.
    if (m === UNKNOWN && rule.action === 'allow') {
      failSafe ??= unknownFacts(rule, namespace, pod);
      continue;
    }
    if (!chosen || STRICTNESS[rule.action] > STRICTNESS[chosen.action]) {
      chosen = rule;
      chosenSure = m === YES;
    }
    if (m === YES) {
      certain = true;
      break;
    }
    failSafe ??= unknownFacts(rule, namespace, pod);
  }
  // Without a certain match the default action is a possible outcome too.
  if (!chosen || (!certain && STRICTNESS[policy.defaultAction] > STRICTNESS[chosen.action])) {
    return {
      action: policy.defaultAction,
      source: { kind: 'default' },
      runtimeClassName: policy.runtimeClassName,
      reason: `no rule matched; spec.defaultAction is ${policy.defaultAction}`,
      fact: 'no rule matched',
      failSafe,
    };
  }
  const explained =
    certain && chosenSure
      ? explainMatch(policy.index, chosen, namespace, pod)
      : { reason: `rule "${chosen.name}" may match`, fact: failSafe?.fact ?? 'unknown facts' };
  return { action: chosen.action, source: { kind: 'rule', name: chosen.name }, runtimeClassName: chosen.runtimeClassName, ...explained, failSafe };
}

/** Who decided, in words: `rule "tenants"`, or `spec.defaultAction`; cut to fit a warning where `quote` cuts. */
function decidedBy(decision: Decision, quote: (value: string) => string = quoted): string {
  return decision.source.kind === 'rule' ? `rule ${quote(decision.source.name)}` : 'spec.defaultAction';
}

/** One reason a pod cannot be admitted as it is. */
interface Problem {
  readonly reason: DenialReason;
  /** the deciding fact, first in the warning */
  readonly fact: string;
  /** the whole explanation, for the denial message */
  readonly text: string;
}

/** What enforcement would do, before mode decides whether it is done or only reported. */
interface Enforcement {
  /** the runtimeClassName to write; undefined: no patch */
  readonly setRuntimeClassName: string | undefined;
  /** the class the pod asked for, when setRuntimeClassName replaces it (onConflict override) */
  readonly replaces: string | undefined;
  /** why the pod cannot be admitted; empty: allowed */
  readonly problems: readonly Problem[];
  /** what the user should know whatever the outcome (incompatible fields under warn, no scheduling) */
  readonly notes: readonly string[];
}

const ADMITTED: Enforcement = { setRuntimeClassName: undefined, replaces: undefined, problems: [], notes: [] };

function denyRule(decision: Decision): Problem {
  return { reason: 'deny_rule', fact: decision.fact, text: decision.reason };
}

function enforceCreate(policy: Policy, decision: Decision, pod: PodView, runtimeClass: RuntimeClassLookup): Enforcement {
  if (decision.action === 'allow') return ADMITTED;
  if (decision.action === 'deny') return { ...ADMITTED, problems: [denyRule(decision)] };

  const target = decision.runtimeClassName;
  const problems: Problem[] = [];
  const notes: string[] = [];
  const fields = pod.incompatibilities;
  const firstField = fields[0];
  if (firstField !== undefined) {
    const fieldFact = `${cut(firstField.split(' ')[0] ?? firstField, 32)}${fields.length > 1 ? ` and ${fields.length - 1} more` : ''}`;
    if (policy.incompatible === 'deny') {
      problems.push({
        reason: 'incompatible',
        fact: `${fieldFact} unsupported`,
        text: `the pod must run in the ${target} sandbox but uses ${few(fields)}, which the sandbox does not support; remove them or ask the cluster admin for an exception rule`,
      });
    } else {
      notes.push(`${fieldFact} may not work sandboxed (${decidedBy(decision)})`);
    }
  }

  let setRuntimeClassName: string | undefined;
  let replaces: string | undefined;
  const current = pod.runtimeClassName;
  if (current === undefined) {
    setRuntimeClassName = target;
  } else if (current !== target && !policy.acceptedRuntimeClasses.has(current)) {
    if (policy.onConflict === 'deny') {
      const accepted = [...new Set([target, ...policy.acceptedRuntimeClasses])].join(', ');
      problems.push({
        reason: 'runtime_class_conflict',
        fact: `runtimeClassName ${quoted(current)} is not a sandbox`,
        text: `the pod asks for runtimeClassName "${current}" but must run sandboxed (accepted: ${accepted}); remove spec.runtimeClassName or set it to "${target}"`,
      });
    } else {
      setRuntimeClassName = target;
      replaces = current;
    }
  }

  const finalClass = setRuntimeClassName ?? current ?? target;
  const fact = runtimeClass(finalClass);
  if (fact.state === 'missing') {
    problems.push({
      reason: 'runtime_class_missing',
      fact: `RuntimeClass ${quoted(finalClass)} missing`,
      text: `RuntimeClass "${finalClass}" does not exist in the cluster, so the pod cannot be sandboxed; a cluster admin must create it (kubectl get runtimeclass lists those that exist) or change runtimeClassName in the SandboxPolicy`,
    });
  } else if (fact.state === 'present') {
    if (fact.nodeSelector === undefined) {
      notes.push(`RuntimeClass ${quoted(finalClass)} has no scheduling; nodes may lack ${quoted(fact.handler)}`);
    } else {
      const conflicts = Object.entries(fact.nodeSelector).filter(([key, value]) => pod.nodeSelector[key] !== undefined && pod.nodeSelector[key] !== value);
      const [firstKey] = conflicts[0] ?? [];
      if (firstKey !== undefined) {
        problems.push({
          reason: 'node_selector_conflict',
          fact: `nodeSelector ${quoted(firstKey)} conflicts`,
          text: few(
            conflicts.map(
              ([key, value]) =>
                `the pod's nodeSelector ${key}=${pod.nodeSelector[key] ?? ''} conflicts with RuntimeClass "${finalClass}" scheduling.nodeSelector ${key}=${value}; remove ${key} from the pod's nodeSelector (the RuntimeClass sets it)`,
            ),
          ),
        });
      }
    }
  }
  if (problems.length > 0) return { setRuntimeClassName: undefined, replaces: undefined, problems, notes };
  return { setRuntimeClassName, replaces, problems: [], notes };
}

/** Whether a class is one the policy counts as sandboxed: accepted, or injected by a rule. */
function isSandboxClass(policy: Policy, name: string | undefined): boolean {
  if (name === undefined) return false;
  return policy.acceptedRuntimeClasses.has(name) || policy.rules.some((rule) => rule.action === 'sandbox' && rule.runtimeClassName === name);
}

/**
 * An UPDATE that changed or added images (`changed`), on `pods` or `pods/ephemeralcontainers`.
 * The pod runs already and its runtimeClassName is immutable (docs/kubernetes.md §3, §7): nothing to
 * patch. In a sandbox class it may take any image a deny rule does not stop; outside one, only what
 * an allow rule still lets run unsandboxed.
 */
function enforceUpdate(policy: Policy, decision: Decision, pod: PodView, changed: readonly PodImage[], ephemeral: boolean): Enforcement {
  if (decision.action === 'deny') return { ...ADMITTED, problems: [denyRule(decision)] };
  if (decision.action === 'allow' || isSandboxClass(policy, pod.runtimeClassName)) return ADMITTED;
  const first = changed[0];
  const images = few(changed.map((image) => `"${image.image}" of ${image.owner} (${image.path})`));
  const runs = pod.runtimeClassName === undefined ? 'without a runtimeClassName' : `in runtimeClassName "${pod.runtimeClassName}"`;
  return {
    ...ADMITTED,
    problems: [
      {
        reason: ephemeral ? 'ephemeral_container' : 'image_update',
        fact: first === undefined ? 'a new image' : imageFact(first),
        text: `${ephemeral ? 'ephemeral container' : 'new'} image ${images} must run sandboxed, but the pod runs ${runs}, which an update cannot change; recreate the pod to run it sandboxed`,
      },
    ],
  };
}

/** Applies mode to what enforcement would do: in audit mode nothing is patched or denied, only reported, in the same words. */
function conclude(policy: Policy, decision: Decision, pod: PodView, enforced: Enforcement): Verdict {
  const by = decidedBy(decision);
  const denied = enforced.problems.length > 0;
  const changes = denied || enforced.setRuntimeClassName !== undefined;
  const findings: string[] = enforced.problems.map((problem) => `${problem.fact}: denied by ${by}`);
  if (enforced.replaces !== undefined) {
    findings.push(`class ${quoted(enforced.replaces)} replaced by ${quoted(enforced.setRuntimeClassName ?? '')} (${by})`);
  } else if (enforced.setRuntimeClassName !== undefined) {
    findings.push(`runtimeClassName ${quoted(enforced.setRuntimeClassName)} set by ${by}`);
  }
  findings.push(...enforced.notes);
  // Say so when unknown facts changed the pod's fate; an unchanged pod needs no note.
  if (decision.failSafe && changes) findings.push(`${decision.failSafe.fact}: fail-safe ${decision.action} (${by})`);
  const first = enforced.problems[0];
  const whole = decidedBy(decision, (value) => `"${value}"`);
  const why = first?.reason === 'deny_rule' ? `: ${decision.reason}` : ` (${decision.reason}): ${enforced.problems.map((p) => p.text).join('; ')}`;
  const denial = first ? `pod ${pod.displayName} denied by ${whole}${why}${decision.failSafe ? `; ${decision.failSafe.reason}` : ''}` : undefined;

  if (policy.mode === 'enforce') {
    return {
      decision,
      allowed: !denied,
      setRuntimeClassName: denied ? undefined : enforced.setRuntimeClassName,
      denial,
      denialReason: first?.reason,
      warnings: findings,
      outcome: denied ? 'denied' : enforced.setRuntimeClassName !== undefined ? 'patched' : 'unchanged',
    };
  }
  return {
    decision,
    allowed: true,
    setRuntimeClassName: undefined,
    denial,
    denialReason: undefined,
    warnings: findings.map((finding) => `audit: ${finding}`),
    outcome: changes ? 'audited' : 'unchanged',
  };
}

/** A pod CREATE: patch, accept, or deny (docs/design.md, the decision table). */
export function judge(policy: Policy, decision: Decision, pod: PodView, runtimeClass: RuntimeClassLookup): Verdict {
  return conclude(policy, decision, pod, enforceCreate(policy, decision, pod, runtimeClass));
}

/** A pod UPDATE (or ephemeral containers added) that changed or added the images in `changed`. */
export function judgeUpdate(policy: Policy, decision: Decision, pod: PodView, changed: readonly PodImage[], ephemeral: boolean): Verdict {
  return conclude(policy, decision, pod, enforceUpdate(policy, decision, pod, changed, ephemeral));
}
