import { describe, expect, it } from 'vitest';
import { parseImage } from '../../src/policy/image.js';
import { compileImagePattern } from '../../src/policy/image-pattern.js';

const DIGEST = 'sha256:' + 'a'.repeat(64);

describe('image normalisation', () => {
  it.each([
    ['an official image gets docker.io/library/ and :latest', 'nginx', 'docker.io/library/nginx:latest'],
    ['a user image gets docker.io/ and :latest', 'user/app', 'docker.io/user/app:latest'],
    ['a tag is kept', 'nginx:1.27', 'docker.io/library/nginx:1.27'],
    ['a digest is kept and no tag is added', `nginx@${DIGEST}`, `docker.io/library/nginx@${DIGEST}`],
    ['tag and digest are both kept', `nginx:1.27@${DIGEST}`, `docker.io/library/nginx:1.27@${DIGEST}`],
    ['a registry with a port is a registry, not a tag', 'localhost:5000/a', 'localhost:5000/a:latest'],
    ['a registry with a port keeps the tag after the path', 'localhost:5000/a:v1', 'localhost:5000/a:v1'],
    ['localhost alone is a registry', 'localhost/app', 'localhost/app:latest'],
    ['an upper-case registry host is lower-cased', 'Registry.Example.COM/team/app', 'registry.example.com/team/app:latest'],
    ['a first segment with upper case is a registry host', 'MyHost/app', 'myhost/app:latest'],
    ['index.docker.io is docker.io', 'index.docker.io/library/nginx', 'docker.io/library/nginx:latest'],
    ['docker.io/nginx gets library/', 'docker.io/nginx', 'docker.io/library/nginx:latest'],
    ['a deep path is kept', 'registry.example.com/platform/tools/agent:2', 'registry.example.com/platform/tools/agent:2'],
    ['an IPv6 registry', '[::1]:5000/app', '[::1]:5000/app:latest'],
  ])('%s', (_name, image, normalized) => {
    const parsed = parseImage(image);
    expect(parsed.ok && parsed.ref.normalized).toBe(normalized);
  });

  it.each([
    ['an empty image', ''],
    ['an upper-case repository path', 'docker.io/Library/Nginx'],
    ['whitespace around the name', ' nginx'],
    ['a bad digest', 'nginx@sha256:zz'],
    ['a tag with a slash-free illegal character', 'nginx:bad!tag'],
    ['a double slash', 'registry.example.com//app'],
    ['a non-string', 42],
  ])('rejects %s', (_name, image) => {
    expect(parseImage(image).ok).toBe(false);
  });
});

function matches(pattern: string, image: string): boolean {
  const compiled = compileImagePattern(pattern);
  if (!compiled.ok) throw new Error(compiled.reason);
  const parsed = parseImage(image);
  if (!parsed.ok) throw new Error(parsed.reason);
  return compiled.pattern.matches(parsed.ref);
}

// The registry spellings that reach the same registry (docs/image-references.md), on images and
// on patterns alike: a pattern written with one spelling matches every other.
describe('registry equivalences', () => {
  const SPELLINGS: [string, string][] = [
    ['docker.io/library/nginx:1', 'docker.io/library/nginx:1'],
    ['nginx:1', 'docker.io/library/nginx:1'],
    ['index.docker.io/library/nginx:1', 'docker.io/library/nginx:1'],
    ['registry-1.docker.io/library/nginx:1', 'docker.io/library/nginx:1'],
    ['docker.io:443/library/nginx:1', 'docker.io/library/nginx:1'],
    ['index.docker.io:443/library/nginx:1', 'docker.io/library/nginx:1'],
    ['registry-1.docker.io:443/library/nginx:1', 'docker.io/library/nginx:1'],
    ['Registry-1.Docker.IO/nginx:1', 'docker.io/library/nginx:1'],
    ['registry-1.docker.io/user/app', 'docker.io/user/app:latest'],
    ['registry.evil.example:443/x', 'registry.evil.example/x:latest'],
    ['REGISTRY.EVIL.EXAMPLE:443/x', 'registry.evil.example/x:latest'],
    ['localhost:443/x', 'localhost/x:latest'],
    ['[::1]:443/x', '[::1]/x:latest'],
  ];
  it.each(SPELLINGS)('%s is %s', (image, normalized) => {
    const parsed = parseImage(image);
    expect(parsed.ok && parsed.ref.normalized).toBe(normalized);
  });

  it.each([
    ['a port other than 443 is another registry', 'registry.example:5000/x', 'registry.example:5000/x:latest'],
    ['a docker.io lookalike is not Docker Hub', 'docker.io.evil.example/library/nginx', 'docker.io.evil.example/library/nginx:latest'],
    ['port 4430 is not 443', 'registry.example:4430/x', 'registry.example:4430/x:latest'],
  ])('%s', (_name, image, normalized) => {
    const parsed = parseImage(image);
    expect(parsed.ok && parsed.ref.normalized).toBe(normalized);
  });

  it.each([
    ['docker.io/library/nginx', SPELLINGS.slice(0, 8).map(([image]) => image)],
    ['registry-1.docker.io:443/library/nginx', SPELLINGS.slice(0, 8).map(([image]) => image)],
    ['index.docker.io/**', SPELLINGS.slice(0, 9).map(([image]) => image)],
    ['registry.evil.example/**', ['registry.evil.example:443/x', 'REGISTRY.EVIL.EXAMPLE:443/x', 'registry.evil.example/a/b@sha256:' + 'a'.repeat(64)]],
    ['registry.evil.example:443/**', ['registry.evil.example/x', 'registry.evil.example:443/x']],
  ])('the pattern %s matches every spelling of its registry', (pattern, images) => {
    for (const image of images) expect(matches(pattern, image), image).toBe(true);
  });
});

describe('image patterns', () => {
  it.each([
    ['a registry glob matches a deep path under it', 'registry.example.com/**', 'registry.example.com/a/b/c:1', true],
    ['a registry glob never matches a host that only shares a prefix', 'registry.example.com/**', 'registry.example.com.evil.io/x', false],
    ['a path glob never matches a sibling that only shares a prefix', 'registry.example.com/platform/**', 'registry.example.com/platform-evil/x', false],
    ['a single star stays inside one segment', 'registry.example.com/platform/*', 'registry.example.com/platform/a/b', false],
    ['a pattern without tag matches every tag', 'docker.io/library/nginx', 'nginx:1.27', true],
    ['a pattern without tag matches digests', 'docker.io/library/nginx', `nginx@${DIGEST}`, true],
    ['a pattern is normalised like an image', 'nginx', 'docker.io/library/nginx:latest', true],
    ['a normalised pattern does not match another repository', 'nginx', 'docker.io/library/nginx-evil', false],
    ['a tag pattern requires the tag', 'nginx:1.*', 'nginx:1.27', true],
    ['a tag pattern rejects another tag', 'nginx:1.*', 'nginx:2.0', false],
    ['a tag pattern rejects a digest-only image', 'nginx:1.*', `nginx@${DIGEST}`, false],
    ['a digest pattern requires the digest', `nginx@${DIGEST}`, `nginx:1.27@${DIGEST}`, true],
    ['a digest pattern rejects another digest', `nginx@${DIGEST}`, `nginx@sha256:${'b'.repeat(64)}`, false],
    ['a registry with port', 'localhost:5000/**', 'localhost:5000/a', true],
    ['a registry with port does not match another port', 'localhost:5000/**', 'localhost:5001/a', false],
    ['an upper-case registry host matches a lower-case pattern', 'registry.example.com/**', 'REGISTRY.EXAMPLE.COM/app', true],
    ['a glob over registries', '*.example.com/**', 'eu.example.com/app', true],
    ['** alone matches everything', '**', 'quay.io/x/y:z', true],
    ['braces list alternatives', 'docker.io/library/{nginx,redis}', 'redis:7', true],
  ])('%s', (_name, pattern, image, expected) => {
    expect(matches(pattern, image)).toBe(expected);
  });

  it.each([
    ['an empty pattern', ''],
    ['a pattern with spaces', 'docker.io/ nginx'],
    ['a negated pattern', '!docker.io/**'],
    ['an unclosed class', 'docker.io/library/ngin[x'],
    ['a single-segment glob that would match nothing', 'ngin*'],
    ['an empty tag', 'nginx:'],
  ])('rejects %s', (_name, pattern) => {
    expect(compileImagePattern(pattern).ok).toBe(false);
  });
});

describe('Docker Hub patterns', () => {
  it.each([
    ['docker.io/** names every repository on Docker Hub', 'docker.io/**', 'user/app', true],
    ['docker.io/** names the official images too', 'docker.io/**', 'nginx', true],
    ['a single-segment name under docker.io is an official image', 'docker.io/nginx', 'docker.io/library/nginx:1', true],
  ])('%s', (_name, pattern, image, expected) => {
    expect(matches(pattern, image)).toBe(expected);
  });
});
