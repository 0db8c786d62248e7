// The AdmissionReview envelope: what the apiserver always sends is checked before any domain code,
// every string that can reach logs is capped, and the operation is one of a closed set.

import { describe, expect, it } from 'vitest';
import { decodeReview, sanitizeWarnings, WARNINGS_MAX_COUNT } from '../../src/admission/review.js';
import { pod, podReview, type Json } from '../support/review.js';

function withRequest(fields: Json): Json {
  const review = podReview();
  return { ...review, request: { ...(review.request as Json), ...fields } };
}

describe('decodeReview', () => {
  it.each(['CREATE', 'UPDATE', 'DELETE', 'CONNECT'])('accepts the operation %s', (operation) => {
    const decoded = decodeReview(withRequest({ operation }));
    expect(decoded.ok && decoded.request.operation).toBe(operation);
  });

  it.each([
    ['an operation outside the closed set', { operation: 'PATCH' }, 'request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got "PATCH"'],
    ['a uid over 128 characters', { uid: 'u'.repeat(129) }, 'request.uid is longer than 128 characters'],
    ['a name over 253 characters', { name: 'n'.repeat(254) }, 'request.name is longer than 253 characters'],
    ['a namespace over 253 characters', { namespace: 'n'.repeat(254) }, 'request.namespace is longer than 253 characters'],
    ['a subresource over 253 characters', { subResource: 's'.repeat(254) }, 'request.subResource is longer than 253 characters'],
    ['a resource over 253 characters', { resource: { group: '', version: 'v1', resource: 'p'.repeat(254) } }, 'request.resource.resource is longer than 253 characters'],
  ])('rejects %s', (_name, fields, message) => {
    expect(decodeReview(withRequest(fields))).toEqual({ ok: false, message });
  });

  it('quotes at most 64 characters of a huge operation', () => {
    const decoded = decodeReview(withRequest({ operation: 'X'.repeat(1_000_000) }));
    expect(decoded.ok).toBe(false);
    if (decoded.ok) return;
    expect(decoded.message.length).toBeLessThan(200);
    expect(decoded.message).toContain('(1000002 characters)');
  });

  it('decodes oldObject, and leaves it undefined when null', () => {
    const old = pod();
    const decoded = decodeReview(withRequest({ operation: 'UPDATE', oldObject: old }));
    expect(decoded.ok && decoded.request.oldObject).toEqual(old);
    const created = decodeReview(podReview());
    expect(created.ok && created.request.oldObject).toBeUndefined();
  });
});

describe('sanitizeWarnings', () => {
  it('keeps each warning under 120 characters, without control characters or duplicates', () => {
    expect(sanitizeWarnings(['a\nb', 'a\nb', 'x'.repeat(300), ''])).toEqual(['a b', `${'x'.repeat(116)}...`]);
  });

  it(`names the first ${WARNINGS_MAX_COUNT - 1} warnings and counts the rest`, () => {
    const warnings = sanitizeWarnings(Array.from({ length: 50 }, (_, i) => `warning ${i}`));
    expect(warnings).toHaveLength(WARNINGS_MAX_COUNT);
    expect(warnings.at(-1)).toBe(`and ${50 - WARNINGS_MAX_COUNT + 1} more warnings`);
  });
});
