import { makeRe } from 'minimatch';
import { canonicalDomain, splitDomain, splitTagAndDigest, type ImageRef } from './image.js';

// An image pattern is a glob over the normalised reference, `/` being the path separator, so
// `registry.example.com/**` never matches `registry.example.com.evil.io/x` (docs/design.md).
//   - A pattern without tag or digest matches every tag and digest of the repositories it names.
//   - `repo:tag-glob` also requires the tag; `repo@digest-glob` also requires the digest.
//   - A first segment without a glob is normalised like an image (`nginx` -> `docker.io/library/nginx`),
//     so patterns can be written the way images are, with the same registry equivalences
//     (docs/image-references.md). A first segment with a glob names registries.
//   - A pattern that can never match a normalised reference is an error, not a rule that silently
//     matches nothing: upper case in the repository (references are lower case there), a registry
//     glob spelled with `:443` or a Docker Hub alias (references never carry them).

export interface ImagePattern {
  readonly source: string;
  /** the pattern after normalisation, as matched */
  readonly normalized: string;
  /** the tag and digest globs, when the pattern has them */
  readonly tag: string | undefined;
  readonly digest: string | undefined;
  /** the literal text before the first glob character: an index key (see policy/index.ts) */
  readonly literalPrefix: string;
  matches(ref: ImageRef): boolean;
}

export type CompiledPattern = { ok: true; pattern: ImagePattern } | { ok: false; reason: string };

// Globs: `*`, `**`, `?`, `[...]` and `{a,b}`. Extglobs are off so `@` and `!` keep their meaning in
// image references (digest separator) rather than being read as pattern syntax.
const GLOB_CHARS = /[*?[\]{}]/;
const GLOB_OPTIONS = { dot: true, nonegate: true, nocomment: true, noext: true } as const;

type StringMatcher = (value: string) => boolean;

/**
 * minimatch reads an unclosed `[` or `{` as a literal character, which would silently match
 * nothing the user meant: such a glob is an error here.
 */
function unbalanced(glob: string): boolean {
  let braces = 0;
  let inClass = false;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === ']') return true;
    else if (c === '{') braces++;
    else if (c === '}' && --braces < 0) return true;
  }
  return inClass || braces !== 0;
}

/** Compiles a glob to a predicate: plain equality when it has no glob characters. */
export function compileGlob(glob: string): StringMatcher | undefined {
  if (!GLOB_CHARS.test(glob)) return (value) => value === glob;
  if (unbalanced(glob)) return undefined;
  const re = makeRe(glob, GLOB_OPTIONS);
  if (re === false) return undefined;
  return (value) => re.test(value);
}

export function hasGlob(text: string): boolean {
  return GLOB_CHARS.test(text);
}

// Character classes (`[A-Za-z]`) may name upper case and still match lower case: they are skipped.
const UPPER_CASE_OUTSIDE_CLASSES = /^(?:\[[^\]]*\]|[^A-Z[])*[A-Z]/;

function neverMatches(repository: string, registryGlob: string | undefined): string | undefined {
  if (UPPER_CASE_OUTSIDE_CLASSES.test(repository)) {
    return 'it has upper case letters, and registry hosts and repository paths are lower case in a reference';
  }
  if (registryGlob !== undefined) {
    // Hosts are canonical in a reference (image.ts canonicalDomain): a glob must name them that way.
    for (const alternative of registryGlob.split(/[{},]/)) {
      if (alternative !== '' && !hasGlob(alternative) && canonicalDomain(alternative) !== alternative) {
        return `registry "${alternative}" is written "${canonicalDomain(alternative)}" in a reference`;
      }
    }
    if (/:443(?=$|[,}])/.test(registryGlob)) return 'the default HTTPS port ":443" never appears in a reference';
  }
  return undefined;
}

export function compileImagePattern(source: string): CompiledPattern {
  if (source === '') return { ok: false, reason: 'pattern is empty' };
  if (/\s/.test(source)) return { ok: false, reason: 'pattern contains whitespace' };
  if (source.startsWith('!')) return { ok: false, reason: 'negated patterns are not supported; use a rule order instead' };
  if (unbalanced(source)) return { ok: false, reason: 'unclosed "[" or "{"' };

  const { name, tag, digest } = splitTagAndDigest(source);
  if (name === '') return { ok: false, reason: 'pattern names no repository' };
  const slash = name.indexOf('/');
  const firstSegment = slash === -1 ? name : name.slice(0, slash);
  let repository: string;
  if (hasGlob(firstSegment)) {
    if (slash === -1 && name !== '**') {
      return {
        ok: false,
        reason: `a glob in the first segment names registries, so it needs a path (e.g. "${name}/**"), or use "docker.io/library/${name}"`,
      };
    }
    repository = name;
  } else {
    const { domain, remainder } = splitDomain(name);
    // `docker.io/**` names every repository on Docker Hub, not only its official `library/` images.
    const rest = slash !== -1 && name.slice(slash + 1).includes('**') ? name.slice(slash + 1) : remainder;
    repository = `${domain}/${rest}`;
  }
  if (tag === '' || digest === '') return { ok: false, reason: 'empty tag or digest after ":" or "@"' };
  const never = neverMatches(repository, hasGlob(firstSegment) ? firstSegment : undefined);
  if (never !== undefined) return { ok: false, reason: `can never match a normalised image reference: ${never}` };

  const repositoryMatches = compileGlob(repository);
  const tagMatches = tag === undefined ? undefined : compileGlob(tag);
  const digestMatches = digest === undefined ? undefined : compileGlob(digest);
  if (!repositoryMatches || (tag !== undefined && !tagMatches) || (digest !== undefined && !digestMatches)) {
    return { ok: false, reason: 'invalid glob' };
  }
  const normalized = repository + (tag === undefined ? '' : `:${tag}`) + (digest === undefined ? '' : `@${digest}`);
  const globAt = repository.search(GLOB_CHARS);
  const literalPrefix = globAt === -1 ? repository : repository.slice(0, globAt);
  return {
    ok: true,
    pattern: {
      source,
      normalized,
      tag,
      digest,
      literalPrefix,
      matches(ref) {
        if (!repositoryMatches(ref.repository)) return false;
        if (tagMatches && (ref.tag === undefined || !tagMatches(ref.tag))) return false;
        if (digestMatches && (ref.digest === undefined || !digestMatches(ref.digest))) return false;
        return true;
      },
    },
  };
}
