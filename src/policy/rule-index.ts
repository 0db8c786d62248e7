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
// Long pattern lists (a blocked-registry list of thousands) are bucketed the same way, pattern by
// pattern, so that an image is only tried against the patterns that can match it.

import type { ImageRef } from './image.js';
import type { ImagePattern } from './image-pattern.js';
import type { PodView } from './pod.js';
import type { Rule } from './policy.js';

/** An anyImage or allImages list, ready to answer "which pattern, first in list order, matches?". */
export interface PatternList {
  first(ref: ImageRef): ImagePattern | undefined;
}

export interface RuleIndex {
  readonly byNamespace: ReadonlyMap<string, readonly Rule[]>;
  readonly byAnyImagePrefix: ReadonlyMap<string, readonly Rule[]>;
  readonly byFirstImagePrefix: ReadonlyMap<string, readonly Rule[]>;
  readonly general: readonly Rule[];
  readonly all: readonly Rule[];
  readonly size: number;
  /** every rule's anyImage and allImages list, keyed by the list itself */
  readonly patternLists: ReadonlyMap<readonly ImagePattern[], PatternList>;
}

// minimatch collapses `//`, resolves `..` (also one made by brace expansion) and unescapes `\`, so
// the literal text of such a pattern may not start the repositories it matches: no prefix for it.
const NOT_LITERAL_PREFIX = /\\|\/\/|\.\.|\/\.|\{\.|,\./;

/**
 * The literal prefix of a pattern cut back to a whole path segment (`a.io/b/` of `a.io/b/c*`), or "":
 * every repository the pattern matches is under it, or is it without the trailing `/` (minimatch's
 * `a.io/b/**` also matches `a.io/b`), which repositoryPrefixes visits too.
 */
function segmentPrefix(pattern: ImagePattern): string {
  if (NOT_LITERAL_PREFIX.test(pattern.normalized)) return '';
  const cut = pattern.literalPrefix.lastIndexOf('/');
  return cut <= 0 ? '' : pattern.literalPrefix.slice(0, cut + 1);
}

function prefixesOf(patterns: readonly ImagePattern[] | undefined): string[] | undefined {
  if (!patterns) return undefined;
  const prefixes = patterns.map(segmentPrefix);
  return prefixes.every((p) => p !== '') ? [...new Set(prefixes)] : undefined;
}

function add<T>(map: Map<string, T[]>, key: string, value: T): void {
  const bucket = map.get(key);
  if (bucket) bucket.push(value);
  else map.set(key, [value]);
}

/** `a.io/b/c` -> `a.io/`, `a.io/b/`, `a.io/b/c/` */
function repositoryPrefixes(repository: string, visit: (prefix: string) => void): void {
  for (let i = repository.indexOf('/'); i !== -1; i = repository.indexOf('/', i + 1)) visit(repository.slice(0, i + 1));
  visit(`${repository}/`);
}

// Up to this many rules, or patterns in a list, are tried in order: a handful of comparisons beat
// the lookups and the set that collect candidates.
const SCAN_MAX_RULES = 16;
const SCAN_MAX_PATTERNS = 8;

function scanList(patterns: readonly ImagePattern[]): PatternList {
  return {
    first(ref) {
      for (const pattern of patterns) if (pattern.matches(ref)) return pattern;
      return undefined;
    },
  };
}

function bucketedList(patterns: readonly ImagePattern[]): PatternList {
  // Positions keep the list order: the first match in the list is the one a scan would find.
  const general: number[] = [];
  const byPrefix = new Map<string, number[]>();
  patterns.forEach((pattern, position) => {
    const prefix = segmentPrefix(pattern);
    if (prefix === '') general.push(position);
    else add(byPrefix, prefix, position);
  });
  return {
    first(ref) {
      let best = Infinity;
      for (const position of general) {
        if ((patterns[position] as ImagePattern).matches(ref)) {
          best = position;
          break;
        }
      }
      repositoryPrefixes(ref.repository, (prefix) => {
        for (const position of byPrefix.get(prefix) ?? []) {
          if (position >= best) break;
          if ((patterns[position] as ImagePattern).matches(ref)) {
            best = position;
            break;
          }
        }
      });
      return patterns[best];
    },
  };
}

export function buildRuleIndex(rules: readonly Rule[]): RuleIndex {
  const byNamespace = new Map<string, Rule[]>();
  const byAnyImagePrefix = new Map<string, Rule[]>();
  const byFirstImagePrefix = new Map<string, Rule[]>();
  const general: Rule[] = [];
  const patternLists = new Map<readonly ImagePattern[], PatternList>();
  for (const rule of rules) {
    const { namespaces, anyImage, allImages } = rule.match;
    for (const list of [anyImage, allImages]) {
      if (list) patternLists.set(list, list.length > SCAN_MAX_PATTERNS ? bucketedList(list) : scanList(list));
    }
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
  return { byNamespace, byAnyImagePrefix, byFirstImagePrefix, general, all: rules, size: rules.length, patternLists };
}

/** The first pattern of `patterns` (a rule's anyImage or allImages) that matches `ref`, in list order. */
export function firstMatch(index: RuleIndex, patterns: readonly ImagePattern[], ref: ImageRef): ImagePattern | undefined {
  const list = index.patternLists.get(patterns);
  if (list) return list.first(ref);
  // A list the index was not built with (never, for a compiled policy): scan it.
  for (const pattern of patterns) if (pattern.matches(ref)) return pattern;
  return undefined;
}

/** The rules that can match this pod, in policy order. */
export function candidateRules(index: RuleIndex, namespace: string, pod: PodView): readonly Rule[] {
  // Small policies: trying every rule costs less than collecting candidates.
  if (index.size <= SCAN_MAX_RULES) return index.all;
  if (index.general.length === index.size) return index.general;
  // An image that cannot be parsed has no prefix, yet image rules may still match it (decided
  // fail-safe in evaluate.ts): every rule must be considered.
  for (const image of pod.images) if (!image.parsed.ok) return index.all;
  const found = new Set<Rule>(index.general);
  const collect = (bucket: readonly Rule[] | undefined): void => {
    if (bucket) for (const rule of bucket) found.add(rule);
  };
  collect(index.byNamespace.get(namespace));
  if (index.byAnyImagePrefix.size > 0) {
    // Pods repeat images (sidecars, one image per worker): each repository is looked up once.
    const seen = new Set<string>();
    for (const image of pod.images) {
      if (!image.parsed.ok || seen.has(image.parsed.ref.repository)) continue;
      seen.add(image.parsed.ref.repository);
      repositoryPrefixes(image.parsed.ref.repository, (prefix) => collect(index.byAnyImagePrefix.get(prefix)));
    }
  }
  const first = pod.images[0];
  if (index.byFirstImagePrefix.size > 0 && first?.parsed.ok) {
    repositoryPrefixes(first.parsed.ref.repository, (prefix) => collect(index.byFirstImagePrefix.get(prefix)));
  }
  if (found.size === index.general.length) return index.general;
  const rules = [...found];
  return rules.length === 1 ? rules : rules.sort((a, b) => a.index - b.index);
}
