// Kubernetes LabelSelector semantics (apimachinery pkg/apis/meta/v1 LabelSelectorAsSelector):
// matchLabels and matchExpressions are ANDed; an empty selector matches everything.
//   In            the label exists and its value is one of values
//   NotIn         the label is absent, or its value is none of values
//   Exists        the label exists (values must be empty)
//   DoesNotExist  the label is absent (values must be empty)

export type Labels = Readonly<Record<string, string>>;

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface LabelSelectorRequirement {
  readonly key: string;
  readonly operator: SelectorOperator;
  readonly values?: readonly string[];
}

export interface LabelSelector {
  readonly matchLabels?: Readonly<Record<string, string>>;
  readonly matchExpressions?: readonly LabelSelectorRequirement[];
}

export type LabelMatcher = (labels: Labels) => boolean;

const has = (labels: Labels, key: string): boolean => Object.prototype.hasOwnProperty.call(labels, key);

function requirementMatcher(requirement: LabelSelectorRequirement): LabelMatcher {
  const { key } = requirement;
  const values = new Set(requirement.values ?? []);
  switch (requirement.operator) {
    case 'In':
      return (labels) => has(labels, key) && values.has(labels[key] as string);
    case 'NotIn':
      return (labels) => !has(labels, key) || !values.has(labels[key] as string);
    case 'Exists':
      return (labels) => has(labels, key);
    case 'DoesNotExist':
      return (labels) => !has(labels, key);
  }
}

/** Compiles a validated selector once; the returned function allocates nothing per call. */
export function compileSelector(selector: LabelSelector): LabelMatcher {
  const checks: LabelMatcher[] = [];
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    checks.push((labels) => has(labels, key) && labels[key] === value);
  }
  for (const requirement of selector.matchExpressions ?? []) checks.push(requirementMatcher(requirement));
  return (labels) => {
    for (const check of checks) if (!check(labels)) return false;
    return true;
  };
}

/** A short, human-readable rendering, for reasons and warnings: `tier=a,env in (x,y),!legacy`. */
export function describeSelector(selector: LabelSelector): string {
  const parts: string[] = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    if (operator === 'In') parts.push(`${key} in (${values.join(',')})`);
    else if (operator === 'NotIn') parts.push(`${key} notin (${values.join(',')})`);
    else if (operator === 'Exists') parts.push(key);
    else parts.push(`!${key}`);
  }
  return parts.length === 0 ? '<everything>' : parts.join(',');
}
