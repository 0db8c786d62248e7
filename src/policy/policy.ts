// The SandboxPolicy: strict validation of the user's document (every error with its path, all at
// once) and compilation into an immutable object whose matchers are built once per load.
// Pure: no I/O. config/policy-file.ts reads the YAML; this module takes the parsed value.

import { compileGlob, compileImagePattern, hasGlob, type ImagePattern } from './image-pattern.js';
import {
  compileSelector,
  describeSelector,
  type LabelMatcher,
  type LabelSelector,
  type LabelSelectorRequirement,
  type SelectorOperator,
} from './selector.js';
import { buildRuleIndex, type RuleIndex } from './rule-index.js';
import type { Json } from '../json.js';

export const POLICY_API_VERSION = 'sandbox-webhook.io/v1alpha1';
export const POLICY_KIND = 'SandboxPolicy';

export type Action = 'sandbox' | 'allow' | 'deny';
export type Mode = 'enforce' | 'audit';
export type OnConflict = 'deny' | 'override';
export type Incompatible = 'deny' | 'warn';
export type Workloads = 'warn' | 'deny';

export const ACTIONS: readonly Action[] = ['sandbox', 'allow', 'deny'];
const MODES: readonly Mode[] = ['enforce', 'audit'];
const ON_CONFLICT: readonly OnConflict[] = ['deny', 'override'];
const INCOMPATIBLE: readonly Incompatible[] = ['deny', 'warn'];
const WORKLOADS: readonly Workloads[] = ['warn', 'deny'];
const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];

export interface NamespaceGlob {
  readonly source: string;
  readonly literal: boolean;
  matches(namespace: string): boolean;
}

export interface RuleMatch {
  readonly namespaces?: readonly NamespaceGlob[];
  readonly namespaceSelector?: { readonly selector: LabelSelector; readonly matches: LabelMatcher };
  readonly podSelector?: { readonly selector: LabelSelector; readonly matches: LabelMatcher };
  readonly anyImage?: readonly ImagePattern[];
  readonly allImages?: readonly ImagePattern[];
}

export interface Rule {
  readonly index: number;
  readonly name: string;
  readonly action: Action;
  /** the class a `sandbox` rule injects: its own override or spec.runtimeClassName */
  readonly runtimeClassName: string;
  readonly match: RuleMatch;
}

export interface Policy {
  readonly runtimeClassName: string;
  readonly acceptedRuntimeClasses: ReadonlySet<string>;
  readonly mode: Mode;
  readonly onConflict: OnConflict;
  readonly incompatible: Incompatible;
  readonly defaultAction: Action;
  /** workload kinds whose pods would be denied: admitted with a warning (warn) or rejected (deny) */
  readonly workloads: Workloads;
  readonly rules: readonly Rule[];
  /** whether any rule reads namespace labels (so a request needs them from the cluster) */
  readonly usesNamespaceLabels: boolean;
  readonly index: RuleIndex;
}

export type CompileResult =
  | { ok: true; policy: Policy; warnings: readonly string[] }
  | { ok: false; errors: readonly string[]; warnings: readonly string[] };

// Kubernetes name rules (apimachinery pkg/util/validation).
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const RULE_NAME = /^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/;
/**
 * Names the webhook itself writes where a rule name goes (the `rule` audit annotation, metrics,
 * logs): `default` for spec.defaultAction, `mirror-pod` for a kubelet's mirror pod. A rule so named
 * would be reported as something it is not.
 */
export const RESERVED_RULE_NAMES: readonly string[] = ['default', 'mirror-pod'];

class Problems {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];
  error(path: string, reason: string): void {
    this.errors.push(`${path}: ${reason}`);
  }
  warn(path: string, reason: string): void {
    this.warnings.push(`${path}: ${reason}`);
  }
}


function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function object(value: unknown, path: string, known: readonly string[], problems: Problems): Json | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.error(path, `expected an object, got ${typeName(value)}`);
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) problems.error(`${path}.${key}`, `unknown field (known: ${known.join(', ')})`);
  }
  return value as Json;
}

function string(value: unknown, path: string, problems: Problems): string | undefined {
  if (typeof value !== 'string') {
    problems.error(path, `expected a string, got ${typeName(value)}`);
    return undefined;
  }
  return value;
}

function oneOf<T extends string>(value: unknown, path: string, allowed: readonly T[], problems: Problems): T | undefined {
  const text = string(value, path, problems);
  if (text === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(text)) {
    problems.error(path, `must be one of ${allowed.join(', ')}, got "${text}"`);
    return undefined;
  }
  return text as T;
}

function list(value: unknown, path: string, problems: Problems, allowEmpty = false): unknown[] | undefined {
  if (!Array.isArray(value)) {
    problems.error(path, `expected a list, got ${typeName(value)}`);
    return undefined;
  }
  if (value.length === 0 && !allowEmpty) {
    problems.error(path, 'must not be empty (an empty list matches nothing; omit the field to match everything)');
    return undefined;
  }
  return value;
}

function runtimeClassName(value: unknown, path: string, problems: Problems): string | undefined {
  const name = string(value, path, problems);
  if (name === undefined) return undefined;
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    problems.error(path, `"${name}" is not a valid RuntimeClass name (a lower case DNS subdomain)`);
    return undefined;
  }
  return name;
}

function labelKey(key: string, path: string, problems: Problems): boolean {
  const slash = key.indexOf('/');
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    problems.error(path, `label key "${key}" has an invalid prefix (a lower case DNS subdomain)`);
    return false;
  }
  if (name.length > 63 || !QUALIFIED_NAME_PART.test(name)) {
    problems.error(path, `"${key}" is not a valid label key`);
    return false;
  }
  return true;
}

function labelValue(value: unknown, path: string, problems: Problems): string | undefined {
  const text = string(value, path, problems);
  if (text === undefined) return undefined;
  if (text.length > 63 || !LABEL_VALUE.test(text)) {
    problems.error(path, `"${text}" is not a valid label value`);
    return undefined;
  }
  return text;
}

function labelSelector(value: unknown, path: string, problems: Problems): LabelSelector | undefined {
  const raw = object(value, path, ['matchLabels', 'matchExpressions'], problems);
  if (!raw) return undefined;
  const before = problems.errors.length;
  let matchLabels: Record<string, string> | undefined;
  if (raw.matchLabels !== undefined) {
    const labels = object(raw.matchLabels, `${path}.matchLabels`, Object.keys(raw.matchLabels ?? {}), problems);
    if (labels) {
      matchLabels = {};
      for (const [key, v] of Object.entries(labels)) {
        const keyPath = `${path}.matchLabels.${key}`;
        const text = labelValue(v, keyPath, problems);
        if (labelKey(key, keyPath, problems) && text !== undefined) matchLabels[key] = text;
      }
    }
  }
  let matchExpressions: LabelSelectorRequirement[] | undefined;
  if (raw.matchExpressions !== undefined) {
    const items = list(raw.matchExpressions, `${path}.matchExpressions`, problems, true) ?? [];
    matchExpressions = [];
    items.forEach((item, i) => {
      const itemPath = `${path}.matchExpressions[${i}]`;
      const req = object(item, itemPath, ['key', 'operator', 'values'], problems);
      if (!req) return;
      const key = string(req.key, `${itemPath}.key`, problems);
      if (key !== undefined) labelKey(key, `${itemPath}.key`, problems);
      const operator = oneOf(req.operator, `${itemPath}.operator`, OPERATORS, problems);
      let values: string[] = [];
      if (req.values !== undefined) {
        values = (list(req.values, `${itemPath}.values`, problems, true) ?? [])
          .map((v, j) => labelValue(v, `${itemPath}.values[${j}]`, problems))
          .filter((v): v is string => v !== undefined);
      }
      if ((operator === 'In' || operator === 'NotIn') && values.length === 0) {
        problems.error(`${itemPath}.values`, `must be non-empty for operator ${operator}`);
      }
      if ((operator === 'Exists' || operator === 'DoesNotExist') && values.length > 0) {
        problems.error(`${itemPath}.values`, `must be empty for operator ${operator}`);
      }
      if (key !== undefined && operator !== undefined) matchExpressions?.push({ key, operator, values });
    });
  }
  if (problems.errors.length > before) return undefined;
  return {
    ...(matchLabels ? { matchLabels } : {}),
    ...(matchExpressions ? { matchExpressions } : {}),
  };
}

function namespaceGlobs(value: unknown, path: string, problems: Problems): NamespaceGlob[] | undefined {
  const items = list(value, path, problems);
  if (!items) return undefined;
  const globs: NamespaceGlob[] = [];
  items.forEach((item, i) => {
    const itemPath = `${path}[${i}]`;
    const source = string(item, itemPath, problems);
    if (source === undefined) return;
    if (source === '' || /[\s/]/.test(source) || source !== source.toLowerCase()) {
      problems.error(itemPath, `invalid glob "${source}": namespace names are lower case, without "/" or spaces`);
      return;
    }
    const matches = compileGlob(source);
    if (!matches) {
      problems.error(itemPath, `invalid glob "${source}"`);
      return;
    }
    globs.push({ source, literal: !hasGlob(source), matches });
  });
  return globs.length === items.length ? globs : undefined;
}

function imagePatterns(value: unknown, path: string, problems: Problems): ImagePattern[] | undefined {
  const items = list(value, path, problems);
  if (!items) return undefined;
  const patterns: ImagePattern[] = [];
  items.forEach((item, i) => {
    const itemPath = `${path}[${i}]`;
    const source = string(item, itemPath, problems);
    if (source === undefined) return;
    const compiled = compileImagePattern(source);
    if (compiled.ok) patterns.push(compiled.pattern);
    else problems.error(itemPath, `invalid glob "${source}": ${compiled.reason}`);
  });
  return patterns.length === items.length ? patterns : undefined;
}

const MATCH_FIELDS = ['namespaces', 'namespaceSelector', 'podSelector', 'anyImage', 'allImages'] as const;

function ruleMatch(value: unknown, path: string, problems: Problems): RuleMatch | undefined {
  const raw = object(value ?? {}, path, MATCH_FIELDS, problems);
  if (!raw) return undefined;
  const match: {
    -readonly [K in keyof RuleMatch]: RuleMatch[K];
  } = {};
  if (raw.namespaces !== undefined) match.namespaces = namespaceGlobs(raw.namespaces, `${path}.namespaces`, problems);
  for (const field of ['namespaceSelector', 'podSelector'] as const) {
    if (raw[field] === undefined) continue;
    const selector = labelSelector(raw[field], `${path}.${field}`, problems);
    if (selector) match[field] = { selector, matches: compileSelector(selector) };
  }
  if (raw.anyImage !== undefined) match.anyImage = imagePatterns(raw.anyImage, `${path}.anyImage`, problems);
  if (raw.allImages !== undefined) match.allImages = imagePatterns(raw.allImages, `${path}.allImages`, problems);
  return match;
}

function matchesEverything(match: RuleMatch): boolean {
  const selectorIsEmpty = (s: RuleMatch['podSelector']): boolean =>
    s === undefined || (Object.keys(s.selector.matchLabels ?? {}).length === 0 && (s.selector.matchExpressions ?? []).length === 0);
  return (
    match.namespaces === undefined &&
    match.anyImage === undefined &&
    match.allImages === undefined &&
    selectorIsEmpty(match.namespaceSelector) &&
    selectorIsEmpty(match.podSelector)
  );
}

/** Validates and compiles a parsed policy document. Never throws on bad input. */
export function compilePolicy(document: unknown): CompileResult {
  const problems = new Problems();
  const root = object(document, '(root)', ['apiVersion', 'kind', 'metadata', 'spec'], problems);
  if (!root) return { ok: false, errors: problems.errors, warnings: problems.warnings };
  if (root.apiVersion !== POLICY_API_VERSION) {
    problems.error('apiVersion', `must be "${POLICY_API_VERSION}", got ${JSON.stringify(root.apiVersion) ?? 'nothing'}`);
  }
  if (root.kind !== POLICY_KIND) {
    problems.error('kind', `must be "${POLICY_KIND}", got ${JSON.stringify(root.kind) ?? 'nothing'}`);
  }
  if (root.metadata !== undefined) object(root.metadata, 'metadata', ['name', 'labels', 'annotations'], problems);
  if (root.spec === undefined) {
    problems.error('spec', 'required');
    return { ok: false, errors: problems.errors, warnings: problems.warnings };
  }
  const spec = object(
    root.spec,
    'spec',
    ['runtimeClassName', 'acceptedRuntimeClasses', 'mode', 'onConflict', 'incompatible', 'defaultAction', 'workloads', 'rules'],
    problems,
  );
  if (!spec) return { ok: false, errors: problems.errors, warnings: problems.warnings };

  const defaultClass =
    spec.runtimeClassName === undefined ? 'gvisor' : runtimeClassName(spec.runtimeClassName, 'spec.runtimeClassName', problems);
  let accepted: string[] = defaultClass === undefined ? [] : [defaultClass];
  if (spec.acceptedRuntimeClasses !== undefined) {
    const items = list(spec.acceptedRuntimeClasses, 'spec.acceptedRuntimeClasses', problems) ?? [];
    accepted = items
      .map((item, i) => runtimeClassName(item, `spec.acceptedRuntimeClasses[${i}]`, problems))
      .filter((name): name is string => name !== undefined);
    if (defaultClass !== undefined && items.length > 0 && !accepted.includes(defaultClass)) {
      problems.warn(
        'spec.acceptedRuntimeClasses',
        `does not list spec.runtimeClassName "${defaultClass}"; it is accepted anyway, since the webhook injects it`,
      );
    }
  }
  const mode = spec.mode === undefined ? 'enforce' : oneOf(spec.mode, 'spec.mode', MODES, problems);
  const onConflict = spec.onConflict === undefined ? 'deny' : oneOf(spec.onConflict, 'spec.onConflict', ON_CONFLICT, problems);
  const incompatible =
    spec.incompatible === undefined ? 'deny' : oneOf(spec.incompatible, 'spec.incompatible', INCOMPATIBLE, problems);
  const defaultAction =
    spec.defaultAction === undefined ? 'sandbox' : oneOf(spec.defaultAction, 'spec.defaultAction', ACTIONS, problems);
  const workloads = spec.workloads === undefined ? 'warn' : oneOf(spec.workloads, 'spec.workloads', WORKLOADS, problems);

  const rules: Rule[] = [];
  const seen = new Map<string, number>();
  let catchAll: string | undefined;
  const rawRules = spec.rules === undefined ? [] : (list(spec.rules, 'spec.rules', problems, true) ?? []);
  rawRules.forEach((item, index) => {
    const path = `spec.rules[${index}]`;
    const raw = object(item, path, ['name', 'match', 'action', 'runtimeClassName'], problems);
    if (!raw) return;
    const name = string(raw.name, `${path}.name`, problems);
    if (name !== undefined) {
      if (name.length > 63 || !RULE_NAME.test(name)) {
        problems.error(`${path}.name`, `"${name}" must be lower case letters, digits, "-", "_" or ".", at most 63 characters`);
      } else if (RESERVED_RULE_NAMES.includes(name)) {
        problems.error(`${path}.name`, `"${name}" is reserved (reserved names: ${RESERVED_RULE_NAMES.join(', ')}); choose another name`);
      } else if (seen.has(name)) {
        problems.error(`${path}.name`, `duplicate rule name "${name}" (also spec.rules[${seen.get(name)}])`);
      } else {
        seen.set(name, index);
      }
    }
    const action = raw.action === undefined ? undefined : oneOf(raw.action, `${path}.action`, ACTIONS, problems);
    if (raw.action === undefined) problems.error(`${path}.action`, `required (one of ${ACTIONS.join(', ')})`);
    let ruleClass = defaultClass;
    if (raw.runtimeClassName !== undefined) {
      ruleClass = runtimeClassName(raw.runtimeClassName, `${path}.runtimeClassName`, problems);
      if (action !== undefined && action !== 'sandbox') {
        problems.error(`${path}.runtimeClassName`, `only a sandbox rule injects a RuntimeClass (this rule's action is ${action})`);
      }
    }
    const errorsBefore = problems.errors.length;
    const match = ruleMatch(raw.match, `${path}.match`, problems);
    // A match with errors lost the fields in error: it is not known to match every pod.
    const matchValid = problems.errors.length === errorsBefore;
    if (catchAll !== undefined) problems.warn(path, `unreachable: rule "${catchAll}" before it matches every pod`);
    if (match && action === 'allow' && match.podSelector) {
      problems.warn(
        `${path}.match.podSelector`,
        `pod labels are written by tenants: this allow rule lets any pod with labels ${describeSelector(match.podSelector.selector)} skip the sandbox`,
      );
    }
    if (match && action === 'deny') {
      for (const field of ['anyImage', 'allImages'] as const) {
        match[field]?.forEach((pattern, i) => {
          if (pattern.tag !== undefined && pattern.digest === undefined) {
            problems.warn(
              `${path}.match.${field}[${i}]`,
              `"${pattern.source}" denies by tag only: tags are mutable and the same image by digest does not match; name the repository without a tag to deny all of it`,
            );
          }
        });
      }
    }
    if (match && matchValid && matchesEverything(match) && catchAll === undefined) catchAll = name ?? `#${index}`;
    if (name !== undefined && action !== undefined && ruleClass !== undefined && match) {
      rules.push({ index, name, action, runtimeClassName: ruleClass, match });
    }
  });

  if (
    problems.errors.length > 0 ||
    defaultClass === undefined ||
    mode === undefined ||
    onConflict === undefined ||
    incompatible === undefined ||
    defaultAction === undefined ||
    workloads === undefined
  ) {
    return { ok: false, errors: problems.errors, warnings: problems.warnings };
  }
  const policy: Policy = {
    runtimeClassName: defaultClass,
    acceptedRuntimeClasses: new Set([defaultClass, ...accepted]),
    mode,
    onConflict,
    incompatible,
    defaultAction,
    workloads,
    rules,
    usesNamespaceLabels: rules.some((rule) => rule.match.namespaceSelector !== undefined),
    index: buildRuleIndex(rules),
  };
  return { ok: true, policy: deepFreeze(policy), warnings: problems.warnings };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value) && !(value instanceof Set)) {
    for (const child of Object.values(value)) if (typeof child !== 'function') deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
