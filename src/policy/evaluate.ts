// The pure decision: (policy, pod, namespace facts, RuntimeClass facts) -> verdict with reasons.
// No I/O, no clock, no logger. The table it implements is DESIGN.md "What a decision does".

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
  /** whether the chosen rule itself surely matches (not only may) */
  let chosenSure = false;
  let certain = false;
  let uncertainty: string | undefined;
  for (const rule of candidateRules(policy.index, namespace.name, pod)) {
    const m = matchRule(policy.index, rule, namespace, pod);
    if (m === NO) continue;
    if (!chosen || STRICTNESS[rule.action] > STRICTNESS[chosen.action]) {
      chosen = rule;
      chosenSure = m === YES;
    }
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
  return new MatchedDecision(policy.index, chosen, namespace, pod, certain && chosenSure, failSafe);
}

/**
 * A rule's decision. Its reason is put in words only when read (a denial message, a log line): most
 * reviews never need it, and explaining a match walks the rule again. A class, so that the lazy
 * getter lives on the prototype and every decision keeps the same fast shape.
 */
class MatchedDecision implements Decision {
  readonly action: Action;
  readonly rule: string;
  readonly runtimeClassName: string;
  private explained: string | undefined;

  constructor(
    private readonly index: RuleIndex,
    private readonly matched: Rule,
    private readonly namespace: NamespaceFacts,
    private readonly pod: PodView,
    /** whether the rule surely matches, not only may */
    private readonly sure: boolean,
    readonly failSafe: string | undefined,
  ) {
    this.action = matched.action;
    this.rule = matched.name;
    this.runtimeClassName = matched.runtimeClassName;
  }

  get reason(): string {
    this.explained ??= this.sure
      ? explainMatch(this.index, this.matched, this.namespace, this.pod)
      : `rule "${this.matched.name}" may match`;
    return this.explained;
  }
}

const WARNING_PREFIX = 'sandbox-webhook: ';

/** What enforcement would do, before mode decides whether it is done or only reported. */
interface Enforcement {
  /** the runtimeClassName to write; undefined: no patch */
  readonly setRuntimeClassName: string | undefined;
  /** the class the pod asked for, when setRuntimeClassName replaces it (onConflict override) */
  readonly replaces: string | undefined;
  /** the denial message; undefined: allowed */
  readonly denial: string | undefined;
  /** what the user should know whatever the outcome (incompatible fields under warn, no scheduling) */
  readonly notes: readonly string[];
}

/** Who decided, in words: `rule "tenants"`, or the default action. */
function decidedBy(decision: Decision): string {
  if (decision.rule !== 'default') return `rule "${decision.rule}"`;
  return decision.action === 'deny' ? 'spec.defaultAction' : `spec.defaultAction ${decision.action}`;
}

// The warning of a sandboxed pod names only the class and the deciding rule: each is put in words
// once, not on every review. Bounded, since policy reloads bring new rule names.
const SET_HEADLINES = new Map<string, Map<string, string>>();
const SET_HEADLINES_MAX_RULES = 4096;

function setHeadline(decision: Decision, runtimeClassName: string): string {
  let byClass = SET_HEADLINES.get(decision.rule);
  let headline = byClass?.get(runtimeClassName);
  if (headline === undefined) {
    headline = `${WARNING_PREFIX}runtimeClassName set to "${runtimeClassName}" by ${decidedBy(decision)}`;
    if (!byClass) {
      if (SET_HEADLINES.size >= SET_HEADLINES_MAX_RULES) SET_HEADLINES.clear();
      SET_HEADLINES.set(decision.rule, (byClass = new Map()));
    }
    byClass.set(runtimeClassName, headline);
  }
  return headline;
}

function enforce(policy: Policy, decision: Decision, pod: PodView, runtimeClass: RuntimeClassLookup): Enforcement {
  if (decision.action === 'allow') return { setRuntimeClassName: undefined, replaces: undefined, denial: undefined, notes: [] };
  // Who decided is put in words only for a denial: a sandboxed pod's warning has its own, kept text.
  if (decision.action === 'deny') {
    const failSafe = decision.failSafe ? `; ${decision.failSafe}` : '';
    return { setRuntimeClassName: undefined, replaces: undefined, denial: `pod ${pod.displayName} denied by ${decidedBy(decision)}: ${decision.reason}${failSafe}`, notes: [] };
  }

  const target = decision.runtimeClassName;
  const problems: string[] = [];
  const notes: string[] = [];
  if (pod.incompatibilities.length > 0) {
    if (policy.incompatible === 'deny') {
      problems.push(
        `the pod must run in the ${target} sandbox but uses ${pod.incompatibilities.join(', ')}, which the sandbox does not support; remove them or ask the cluster admin for an exception rule`,
      );
    } else {
      notes.push(`${WARNING_PREFIX}sandboxed pod uses ${pod.incompatibilities.join(', ')}; it may not work under ${target}`);
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
      problems.push(
        `the pod asks for runtimeClassName "${current}" but must run sandboxed (accepted: ${accepted}); remove spec.runtimeClassName or set it to "${target}"`,
      );
    } else {
      setRuntimeClassName = target;
      replaces = current;
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
      notes.push(`${WARNING_PREFIX}RuntimeClass "${finalClass}" has no scheduling: the pod may land on a node without ${fact.handler}`);
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
    return { setRuntimeClassName: undefined, replaces: undefined, denial: `pod ${pod.displayName} denied by ${decidedBy(decision)} (${decision.reason}): ${problems.join('; ')}`, notes };
  }
  return { setRuntimeClassName, replaces, denial: undefined, notes };
}

/** Applies the decision to the pod as it is: patch, accept, or deny (DESIGN.md decision table). */
export function judge(policy: Policy, decision: Decision, pod: PodView, runtimeClass: RuntimeClassLookup): Verdict {
  const enforced = enforce(policy, decision, pod, runtimeClass);
  const changes = enforced.denial !== undefined || enforced.setRuntimeClassName !== undefined;
  // Say so when unknown facts changed the pod's fate; an unchanged pod needs no note.
  const failSafeNote =
    decision.failSafe && changes ? [`${WARNING_PREFIX}namespace labels or an image unknown; ${decision.action} chosen fail-safe`] : [];

  if (policy.mode === 'enforce') {
    const warnings = enforced.notes.slice();
    if (enforced.denial !== undefined) {
      warnings.push(`${WARNING_PREFIX}pod denied by ${decidedBy(decision)}`);
    } else if (enforced.replaces !== undefined) {
      warnings.push(`${WARNING_PREFIX}runtimeClassName "${enforced.replaces}" replaced by "${enforced.setRuntimeClassName}" (${decidedBy(decision)})`);
    } else if (enforced.setRuntimeClassName !== undefined) {
      warnings.push(setHeadline(decision, enforced.setRuntimeClassName));
    }
    if (failSafeNote.length > 0) warnings.push(...failSafeNote);
    return {
      decision,
      allowed: enforced.denial === undefined,
      setRuntimeClassName: enforced.setRuntimeClassName,
      denial: enforced.denial,
      warnings,
      outcome: enforced.denial !== undefined ? 'denied' : enforced.setRuntimeClassName !== undefined ? 'patched' : 'unchanged',
    };
  }
  // Audit mode never patches or denies: it tells the user what enforcement would have done.
  if (!changes && enforced.notes.length === 0) {
    return { decision, allowed: true, setRuntimeClassName: undefined, denial: undefined, warnings: [], outcome: 'unchanged' };
  }
  const finding =
    enforced.denial !== undefined
      ? `audit: would deny (${decision.rule === 'default' ? 'spec.defaultAction' : `rule "${decision.rule}"`})`
      : enforced.setRuntimeClassName !== undefined
        ? `audit: would set runtimeClassName "${enforced.setRuntimeClassName}" (rule "${decision.rule}")`
        : `audit: ${decision.action} (rule "${decision.rule}")`;
  return {
    decision,
    allowed: true,
    setRuntimeClassName: undefined,
    denial: undefined,
    warnings: [
      `${WARNING_PREFIX}${finding}`,
      ...(enforced.denial !== undefined ? [`${WARNING_PREFIX}audit: ${enforced.denial}`] : []),
      ...[...enforced.notes, ...failSafeNote].map((w) => w.replace(WARNING_PREFIX, `${WARNING_PREFIX}audit: `)),
    ],
    outcome: changes ? 'audited' : 'unchanged',
  };
}
