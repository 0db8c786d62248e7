// The AdmissionReview envelope (admission.k8s.io v1 and v1beta1): decode and check it before any
// domain code runs, and encode answers in the version the apiserver sent (docs/kubernetes.md §1).
// Knows nothing about HTTP.

import { isRecord } from '../json.js';

export const REVIEW_VERSIONS = ['admission.k8s.io/v1', 'admission.k8s.io/v1beta1'] as const;
export type ReviewVersion = (typeof REVIEW_VERSIONS)[number];

export interface GroupVersionKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
}

export interface GroupVersionResource {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
}

export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: GroupVersionKind;
  readonly resource: GroupVersionResource;
  readonly subResource: string | undefined;
  readonly name: string | undefined;
  readonly namespace: string | undefined;
  readonly operation: Operation;
  readonly object: unknown;
  /** the object before an UPDATE (or DELETE); undefined otherwise */
  readonly oldObject: unknown;
  readonly dryRun: boolean;
  /** the authenticated requester; decisions never depend on it, except to recognise a kubelet */
  readonly userInfo: { readonly username: string; readonly groups: readonly string[] };
}

export interface AdmissionStatus {
  readonly code: number;
  readonly message: string;
  readonly reason?: string;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly status?: AdmissionStatus;
  /** standard padded base64 of a JSON Patch array; always with patchType (VerifyAdmissionResponse) */
  readonly patch?: string;
  readonly patchType?: 'JSONPatch';
  readonly warnings?: readonly string[];
  readonly auditAnnotations?: Readonly<Record<string, string>>;
}

export interface AdmissionReviewReply {
  readonly apiVersion: ReviewVersion;
  readonly kind: 'AdmissionReview';
  readonly response: AdmissionResponse;
}

/** The operations an apiserver sends (PATCH arrives as UPDATE; docs/kubernetes.md §1): a closed set. */
export const OPERATIONS = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'] as const;
export type Operation = (typeof OPERATIONS)[number];

// Caps on the strings of the envelope that reach logs and messages. The apiserver's own limits are
// lower: a uid is a UUID (36), object names are DNS subdomains (253), resources and subresources
// are DNS labels or paths of them. A review over a cap is not from an apiserver.
const UID_MAX_CHARS = 128;
const NAME_MAX_CHARS = 253;
const RESOURCE_MAX_CHARS = 253;
const USERNAME_MAX_CHARS = 1024;
const QUOTED_MAX_CHARS = 64;

export type DecodedReview =
  | { ok: true; apiVersion: ReviewVersion; request: AdmissionRequest }
  | { ok: false; message: string };


function fail(message: string): DecodedReview {
  return { ok: false, message };
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** A value from the request, quoted for a message: at most QUOTED_MAX_CHARS of it. */
function quote(value: unknown): string {
  const text = JSON.stringify(value) ?? 'nothing';
  return text.length > QUOTED_MAX_CHARS ? `${text.slice(0, QUOTED_MAX_CHARS)}... (${text.length} characters)` : text;
}

/** The first field whose string is longer than its cap, in words; undefined when all fit. */
function overCap(fields: readonly [string, unknown, number][]): string | undefined {
  for (const [path, value, max] of fields) {
    if (typeof value === 'string' && value.length > max) return `${path} is longer than ${max} characters`;
  }
  return undefined;
}

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

function userInfo(value: unknown): AdmissionRequest['userInfo'] {
  if (!isRecord(value)) return { username: '', groups: [] };
  const raw = value.groups;
  // The apiserver sends a list of strings: it is used as it is, and copied only when it is not.
  const groups = Array.isArray(raw) ? (raw.every(isString) ? (raw as string[]) : raw.filter(isString)) : [];
  return { username: optionalString(value.username) ?? '', groups };
}

/**
 * Checks the envelope of a parsed body. Anything the apiserver always sends (uid, kind, resource,
 * operation) must be there; a review that lacks it is not from an apiserver and gets a 400.
 */
export function decodeReview(body: unknown): DecodedReview {
  if (!isRecord(body)) return fail('body must be a JSON object (an AdmissionReview)');
  if (body.kind !== 'AdmissionReview') {
    return fail(`kind must be "AdmissionReview", got ${quote(body.kind)}`);
  }
  const apiVersion = body.apiVersion;
  if (!REVIEW_VERSIONS.includes(apiVersion as ReviewVersion)) {
    return fail(`apiVersion must be one of ${REVIEW_VERSIONS.join(', ')}, got ${quote(apiVersion)}`);
  }
  const request = body.request;
  if (!isRecord(request)) return fail('request is missing: an AdmissionReview sent for admission carries a request');
  if (typeof request.uid !== 'string' || request.uid === '') return fail('request.uid is missing or empty');
  const kind = request.kind;
  if (!isRecord(kind) || typeof kind.kind !== 'string') return fail('request.kind is missing or has no kind');
  const resource = request.resource;
  if (!isRecord(resource) || typeof resource.resource !== 'string') {
    return fail('request.resource is missing or has no resource');
  }
  if (typeof request.operation !== 'string' || request.operation === '') return fail('request.operation is missing');
  if (!OPERATIONS.includes(request.operation as Operation)) {
    return fail(`request.operation must be one of ${OPERATIONS.join(', ')}, got ${quote(request.operation)}`);
  }
  const tooLong = overCap([
    ['request.uid', request.uid, UID_MAX_CHARS],
    ['request.name', request.name, NAME_MAX_CHARS],
    ['request.namespace', request.namespace, NAME_MAX_CHARS],
    ['request.kind.group', kind.group, RESOURCE_MAX_CHARS],
    ['request.kind.version', kind.version, RESOURCE_MAX_CHARS],
    ['request.kind.kind', kind.kind, RESOURCE_MAX_CHARS],
    ['request.resource.group', resource.group, RESOURCE_MAX_CHARS],
    ['request.resource.version', resource.version, RESOURCE_MAX_CHARS],
    ['request.resource.resource', resource.resource, RESOURCE_MAX_CHARS],
    ['request.subResource', request.subResource, RESOURCE_MAX_CHARS],
    ['request.userInfo.username', isRecord(request.userInfo) ? request.userInfo.username : undefined, USERNAME_MAX_CHARS],
  ]);
  if (tooLong !== undefined) return fail(tooLong);
  return {
    ok: true,
    apiVersion: apiVersion as ReviewVersion,
    request: {
      uid: request.uid,
      kind: { group: optionalString(kind.group) ?? '', version: optionalString(kind.version) ?? '', kind: kind.kind },
      resource: {
        group: optionalString(resource.group) ?? '',
        version: optionalString(resource.version) ?? '',
        resource: resource.resource,
      },
      subResource: optionalString(request.subResource) || undefined,
      name: optionalString(request.name),
      namespace: optionalString(request.namespace),
      operation: request.operation as Operation,
      object: request.object,
      oldObject: request.oldObject ?? undefined,
      dryRun: request.dryRun === true,
      userInfo: userInfo(request.userInfo),
    },
  };
}

/**
 * The reply as a JSON Schema, for a serializer compiled once (fastify's fast-json-stringify) rather
 * than JSON.stringify walking every answer. Such a serializer writes only the properties named
 * here: the `satisfies` clauses make a field added to AdmissionResponse or AdmissionStatus without
 * its schema a type error, so no field can be dropped silently.
 */
const STATUS_PROPERTIES = {
  code: { type: 'integer' },
  reason: { type: 'string' },
  message: { type: 'string' },
} as const satisfies Record<keyof AdmissionStatus, unknown>;

const RESPONSE_PROPERTIES = {
  uid: { type: 'string' },
  allowed: { type: 'boolean' },
  status: { type: 'object', properties: STATUS_PROPERTIES, required: ['code', 'message'] },
  patchType: { type: 'string' },
  // Standard base64, made by Buffer: nothing in it needs escaping, so none is attempted.
  patch: { type: 'string', format: 'unsafe' },
  warnings: { type: 'array', items: { type: 'string' } },
  // The keys every answer uses are named, so that they are written as constants; any other key is
  // written too, escaped.
  auditAnnotations: {
    type: 'object',
    properties: { decision: { type: 'string' }, rule: { type: 'string' }, outcome: { type: 'string' }, mode: { type: 'string' }, 'fail-safe': { type: 'string' } },
    additionalProperties: { type: 'string' },
  },
} as const satisfies Record<keyof AdmissionResponse, unknown>;

export const REVIEW_REPLY_SCHEMA = {
  type: 'object',
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    response: { type: 'object', properties: RESPONSE_PROPERTIES, required: ['uid', 'allowed'] },
  } satisfies Record<keyof AdmissionReviewReply, unknown>,
  required: ['apiVersion', 'kind', 'response'],
} as const;

export function reviewReply(apiVersion: ReviewVersion, response: AdmissionResponse): AdmissionReviewReply {
  return { apiVersion, kind: 'AdmissionReview', response };
}

// The apiserver drops warnings that are empty or duplicated, asks for each to stay under 120
// characters without newlines, and truncates past 4096 characters in all (docs/kubernetes.md §1).
// A few warnings, each cut to fit, stay far below that; the last one says how many were left out.
const WARNING_MAX_CHARS = 120;
export const WARNINGS_MAX_COUNT = 8;

/** status.message and the logged reason: the first 4 KiB say what a user needs; lists inside name a few and count the rest. */
export const MESSAGE_MAX_CHARS = 4096;

export function capMessage(message: string): string {
  if (message.length <= MESSAGE_MAX_CHARS) return message;
  const more = ` ... (${message.length - MESSAGE_MAX_CHARS} more characters)`;
  return `${message.slice(0, MESSAGE_MAX_CHARS - more.length)}${more}`;
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]+/g;
// eslint-disable-next-line no-control-regex
const HAS_CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

export function sanitizeWarnings(warnings: readonly string[]): string[] {
  const out: string[] = [];
  for (const warning of warnings) {
    // Most warnings are clean: they are tested, not rewritten.
    let text = HAS_CONTROL_CHARACTER.test(warning) ? warning.replace(CONTROL_CHARACTERS, ' ') : warning;
    text = text.trim();
    if (text.length >= WARNING_MAX_CHARS) text = `${text.slice(0, WARNING_MAX_CHARS - 4)}...`;
    if (text !== '' && !out.includes(text)) out.push(text);
  }
  if (out.length <= WARNINGS_MAX_COUNT) return out;
  const left = out.length - (WARNINGS_MAX_COUNT - 1);
  return [...out.slice(0, WARNINGS_MAX_COUNT - 1), `and ${left} more warnings`];
}
