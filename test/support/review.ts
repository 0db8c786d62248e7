import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type Json = Record<string, unknown>;

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
/**
 * Upstream serialisation fixtures (kubernetes/api testdata, every field set), kept beside the
 * repository in ../shared/fixtures (CI lays it there), or wherever SANDBOX_WEBHOOK_SHARED_FIXTURES
 * points. Tests over them are skipped, and say so, where they are absent (CI sets
 * SANDBOX_WEBHOOK_REQUIRE_SHARED_FIXTURES=1 to make that an error instead).
 */
export const SHARED_FIXTURES =
  process.env.SANDBOX_WEBHOOK_SHARED_FIXTURES ?? fileURLToPath(new URL('../../../shared/fixtures/kubernetes-api/', import.meta.url));
export const HAVE_SHARED_FIXTURES = existsSync(SHARED_FIXTURES);
if (!HAVE_SHARED_FIXTURES) {
  if (process.env.SANDBOX_WEBHOOK_REQUIRE_SHARED_FIXTURES === '1') {
    throw new Error(`upstream fixtures not found at ${SHARED_FIXTURES}`);
  }
  process.stderr.write(`note: upstream fixtures not found at ${SHARED_FIXTURES}; the tests over them are skipped\n`);
}

/** A fresh copy of a JSON fixture (tests mutate their copy). */
export function fixture(path: string): Json {
  return JSON.parse(readFileSync(path, 'utf8')) as Json;
}

export interface PodReviewOptions {
  namespace?: string;
  operation?: string;
  apiVersion?: string;
  uid?: string;
  subResource?: string;
  pod?: Json;
}

export function pod(spec: Json = {}, metadata: Json = {}): Json {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'app', ...metadata },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27' }], ...spec },
  };
}

export function podReview(options: PodReviewOptions = {}): Json {
  const namespace = options.namespace ?? 'team-a';
  const object = options.pod ?? pod();
  return {
    apiVersion: options.apiVersion ?? 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: options.uid ?? 'b0f4a7c2-1111-4c3e-9d2a-5e6f7a8b9c0d',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      ...(options.subResource ? { subResource: options.subResource } : {}),
      name: ((object.metadata as Json | undefined)?.name as string | undefined) ?? '',
      namespace,
      operation: options.operation ?? 'CREATE',
      userInfo: { username: 'alice' },
      object,
      oldObject: null,
      dryRun: false,
    },
  };
}

export function decodePatch(response: Json): unknown[] | undefined {
  const patch = response.patch;
  if (typeof patch !== 'string') return undefined;
  return JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as unknown[];
}
