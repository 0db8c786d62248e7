// Image references, normalised the way container runtimes resolve them
// (distribution/reference ParseNormalizedNamed + TagNameOnly, as used by containerd's CRI):
//   nginx             -> docker.io/library/nginx:latest
//   user/app          -> docker.io/user/app:latest
//   Registry.IO:5000/a -> registry.io:5000/a:latest   (hosts are case-insensitive)
//   nginx@sha256:...  -> docker.io/library/nginx@sha256:...   (a digest pins it: no tag is added)
// and with the registry spellings that reach the same registry made one (docs/image-references.md):
//   index.docker.io, registry-1.docker.io (with or without :443) -> docker.io
//   host:443                                                     -> host   (the default HTTPS port)
// Images and policy patterns both go through canonicalDomain, so a deny rule written for a registry
// also matches every other spelling of it.

export interface ImageRef {
  /** registry host (lower case), with port if any: `docker.io`, `localhost:5000` */
  readonly domain: string;
  /** `domain/path`, no tag or digest: what an untagged pattern is matched against */
  readonly repository: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
  /** repository[:tag][@digest], the canonical form shown to users */
  readonly normalized: string;
}

export type ParsedImage = { ok: true; ref: ImageRef } | { ok: false; reason: string };

const DEFAULT_DOMAIN = 'docker.io';
// Docker Hub's other names: distribution/reference normalize.go maps index.docker.io (legacyDefaultDomain)
// to docker.io, and containerd's docker resolver (core/remotes/docker/resolver.go) sends docker.io
// to registry-1.docker.io, so all three pull the same images.
const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set(['index.docker.io', 'registry-1.docker.io']);
const DEFAULT_HTTPS_PORT = ':443';
const OFFICIAL_REPO_PREFIX = 'library/';

// The grammar of github.com/distribution/reference (reference.go), anchored.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const MAX_REFERENCE_LENGTH = 4096;

/**
 * The one spelling of a registry host: lower case (hosts are case-insensitive), without the default
 * HTTPS port (registries are reached over HTTPS, so `host:443` is `host`), Docker Hub's aliases as
 * `docker.io`.
 */
export function canonicalDomain(host: string): string {
  let domain = host.toLowerCase();
  if (domain.endsWith(DEFAULT_HTTPS_PORT)) domain = domain.slice(0, -DEFAULT_HTTPS_PORT.length);
  return DOCKER_HUB_ALIASES.has(domain) ? DEFAULT_DOMAIN : domain;
}

/**
 * Splits `name` into domain and remainder the way docker does: the first path component is a
 * registry host only when it contains `.` or `:`, is `localhost`, or has upper case letters.
 */
export function splitDomain(name: string): { domain: string; remainder: string } {
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  const isHost =
    slash !== -1 &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first.toLowerCase() !== first);
  const domain = isHost ? canonicalDomain(first) : DEFAULT_DOMAIN;
  let remainder = isHost ? name.slice(slash + 1) : name;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return { domain, remainder };
}

/** Splits `name[:tag][@digest]`; a `:` belongs to the tag only after the last `/` (ports come before). */
export function splitTagAndDigest(reference: string): {
  name: string;
  tag: string | undefined;
  digest: string | undefined;
} {
  let rest = reference;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { name: rest, tag, digest };
}

export function parseImage(image: unknown): ParsedImage {
  if (typeof image !== 'string') return { ok: false, reason: 'image is not a string' };
  if (image === '') return { ok: false, reason: 'image is empty' };
  if (image.length > MAX_REFERENCE_LENGTH) return { ok: false, reason: 'image reference is too long' };
  if (image.trim() !== image) return { ok: false, reason: 'image has leading or trailing whitespace' };

  const { name, tag, digest } = splitTagAndDigest(image);
  if (digest !== undefined && !DIGEST_RE.test(digest)) return { ok: false, reason: `invalid digest "${digest}"` };
  if (tag !== undefined && !TAG_RE.test(tag)) return { ok: false, reason: `invalid tag "${tag}"` };
  const { domain, remainder } = splitDomain(name);
  if (!DOMAIN_RE.test(domain)) return { ok: false, reason: `invalid registry host "${domain}"` };
  if (!PATH_RE.test(remainder)) {
    return { ok: false, reason: `invalid repository path "${remainder}" (lower case letters, digits, separators)` };
  }
  const repository = `${domain}/${remainder}`;
  const effectiveTag = tag ?? (digest === undefined ? 'latest' : undefined);
  const normalized =
    repository + (effectiveTag === undefined ? '' : `:${effectiveTag}`) + (digest === undefined ? '' : `@${digest}`);
  return { ok: true, ref: { domain, repository, tag: effectiveTag, digest, normalized } };
}
