// An index over the rules, built once per policy load, so that a review only looks at rules that
// can match it (first-match order is kept): with 10,000 rules keyed by namespace or registry path,
// a review touches a handful of them.
//
// Each rule sits in exactly one bucket:
//   - by namespace, when all its `namespaces` entries are literal names;
//   - else by image path prefix, when every anyImage (or allImages) pattern starts with a literal
//     path of whole segments (`registry.example.com/team-a/` for `registry.example.com/team-a/**`):
//     such a rule can only match a pod that has an image under one of those prefixes (for allImages:
//     whose first image is);
//   - else in the general list, tried for every review.

import type { ImagePattern } from './image-pattern.js';
import type { PodView } from './pod.js';
import type { Rule } from './policy.js';

export interface RuleIndex {
  readonly byNamespace: ReadonlyMap<string, readonly Rule[]>;
  readonly byAnyImagePrefix: ReadonlyMap<string, readonly Rule[]>;
  readonly byFirstImagePrefix: ReadonlyMap<string, readonly Rule[]>;
  readonly general: readonly Rule[];
  readonly all: readonly Rule[];
  readonly size: number;
}

/** The literal prefix of a pattern cut back to a whole path segment (`a.io/b/` of `a.io/b/c*`), or "". */
function segmentPrefix(pattern: ImagePattern): string {
  const cut = pattern.literalPrefix.lastIndexOf('/');
  return cut <= 0 ? '' : pattern.literalPrefix.slice(0, cut + 1);
}

function prefixesOf(patterns: readonly ImagePattern[] | undefined): string[] | undefined {
  if (!patterns) return undefined;
  const prefixes = patterns.map(segmentPrefix);
  return prefixes.every((p) => p !== '') ? [...new Set(prefixes)] : undefined;
}

function add(map: Map<string, Rule[]>, key: string, rule: Rule): void {
  const bucket = map.get(key);
  if (bucket) bucket.push(rule);
  else map.set(key, [rule]);
}

export function buildRuleIndex(rules: readonly Rule[]): RuleIndex {
  const byNamespace = new Map<string, Rule[]>();
  const byAnyImagePrefix = new Map<string, Rule[]>();
  const byFirstImagePrefix = new Map<string, Rule[]>();
  const general: Rule[] = [];
  for (const rule of rules) {
    const { namespaces, anyImage, allImages } = rule.match;
    if (namespaces && namespaces.every((glob) => glob.literal)) {
      for (const name of new Set(namespaces.map((glob) => glob.source))) add(byNamespace, name, rule);
      continue;
    }
    const anyPrefixes = prefixesOf(anyImage);
    if (anyPrefixes) {
      for (const prefix of anyPrefixes) add(byAnyImagePrefix, prefix, rule);
      continue;
    }
    const allPrefixes = prefixesOf(allImages);
    if (allPrefixes) {
      for (const prefix of allPrefixes) add(byFirstImagePrefix, prefix, rule);
      continue;
    }
    general.push(rule);
  }
  return { byNamespace, byAnyImagePrefix, byFirstImagePrefix, general, all: rules, size: rules.length };
}

/** `a.io/b/c/d` -> `a.io/`, `a.io/b/`, `a.io/b/c/` */
function repositoryPrefixes(repository: string, visit: (prefix: string) => void): void {
  for (let i = repository.indexOf('/'); i !== -1; i = repository.indexOf('/', i + 1)) visit(repository.slice(0, i + 1));
}

/** The rules that can match this pod, in policy order. */
export function candidateRules(index: RuleIndex, namespace: string, pod: PodView): readonly Rule[] {
  // Small policies: the index saves nothing.
  if (index.general.length === index.size) return index.general;
  // An image that cannot be parsed has no prefix, yet image rules may still match it (decided
  // fail-safe in evaluate.ts): every rule must be considered.
  if (pod.images.some((image) => !image.parsed.ok)) return index.all;
  const found = new Set<Rule>(index.general);
  for (const rule of index.byNamespace.get(namespace) ?? []) found.add(rule);
  if (index.byAnyImagePrefix.size > 0) {
    for (const image of pod.images) {
      if (!image.parsed.ok) continue;
      repositoryPrefixes(image.parsed.ref.repository, (prefix) => {
        for (const rule of index.byAnyImagePrefix.get(prefix) ?? []) found.add(rule);
      });
    }
  }
  const first = pod.images[0];
  if (index.byFirstImagePrefix.size > 0 && first?.parsed.ok) {
    repositoryPrefixes(first.parsed.ref.repository, (prefix) => {
      for (const rule of index.byFirstImagePrefix.get(prefix) ?? []) found.add(rule);
    });
  }
  return [...found].sort((a, b) => a.index - b.index);
}
