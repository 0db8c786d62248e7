// Request bodies: how large a review may be, how many bytes of bodies are held at once, and what is
// read of a body that is not kept. Every review the apiserver can send is read and answered in-band;
// a body we do not keep is still read to its end (within the read deadline) and, when the uid and
// apiVersion of its review can be read from its first bytes, answered with an in-band denial: an
// HTTP error would be a call failure, which under failurePolicy Ignore admits the pod unchecked
// (docs/kubernetes.md §1).

import type { Readable } from 'node:stream';
import { REVIEW_VERSIONS, type ReviewVersion } from '../admission/review.js';

const MIB = 1024 * 1024;

/**
 * The largest AdmissionReview the apiserver sends. An object is at most ~1.5 MiB as stored (etcd's
 * default `--max-request-bytes`); an UPDATE review carries it twice (object and oldObject); the
 * apiserver writes the review with Go's encoding/json, which spells `<`, `>` and `&` as `\u003c`,
 * `\u003e`, `\u0026` (six bytes for one), so each copy can grow up to six times (docs/kubernetes.md
 * §7); and the envelope (userInfo, options) adds less than 1 MiB: 2 x 6 x 1.5 MiB + 1 MiB = 19 MiB.
 */
export const BODY_LIMIT_BYTES = 2 * 6 * 1.5 * MIB + MIB;

/**
 * The first bytes of every body are not counted against the shared budget: nearly every review is
 * smaller (a pod of 8 containers is ~8 KiB), so the budget only ever holds back large ones. With
 * the connection cap this bounds what small bodies hold: 256 connections x 16 KiB = 4 MiB. It was
 * 64 KiB (16 MiB in all); under 255 stalled 512 KiB bodies that held 12 MiB more and, on Node 24,
 * raised the peak RSS by 120-126 MB instead of 97-98 MB (test/ops/limits.ops.test.ts).
 */
export const UNCOUNTED_BODY_BYTES = 16 * 1024;

/** Bytes kept of a body that is not kept: the envelope's kind, apiVersion and request.uid come first. */
const HEAD_BYTES = 4096;

/**
 * The bytes of request bodies held at once beyond each one's uncounted first bytes (default 32
 * MiB, --max-buffered-body-mib: one worst-case review fits). Measured with the built server
 * (test/ops/limits.ops.test.ts, this 2-vCPU VM, Node 24): 255 connections each stalled after 512
 * KiB of body raised its RSS by 97-98 MB at peak: the 36 MiB kept, the TLS state of each
 * connection, and the dropped bytes until V8 collects them (it runs a full collection for external
 * memory only after about 64 MiB more of it). Earlier, on Node 20: the same with 2 KiB each by 13 MB,
 * and a worst-case review of 18.8 MB by 75 MB while parsed.
 */
export class BodyBudget {
  /** held now; read by tests and the ops log, changed only by take() and give() */
  heldBytes = 0;

  constructor(readonly limitBytes: number) {}

  take(bytes: number): boolean {
    if (this.heldBytes + bytes > this.limitBytes) return false;
    this.heldBytes += bytes;
    return true;
  }

  give(bytes: number): void {
    this.heldBytes -= bytes;
  }
}

/** What identifies a review's answer: enough for an in-band denial. */
export interface EnvelopeHead {
  readonly apiVersion: ReviewVersion;
  readonly uid: string;
}

export type ShedReason = 'body_too_large' | 'overloaded';

/** A body read to its end but not kept. */
export class UnreadBody {
  constructor(
    readonly reason: ShedReason,
    readonly bytes: number,
    /** undefined when the first bytes do not show an AdmissionReview's apiVersion and uid */
    readonly head: EnvelopeHead | undefined,
  ) {}
}

// The apiserver writes the envelope in the order of Go's struct fields: kind, apiVersion, then
// request, whose first field is uid (k8s.io/api/admission/v1 types.go). A uid is a UUID; any
// printable text without quotes or backslashes up to 256 characters is accepted.
// eslint-disable-next-line no-control-regex
const REQUEST_UID = /"request"\s*:\s*\{\s*"uid"\s*:\s*"([^"\\\u0000-\u001f]{1,256})"/;
const KIND = /"kind"\s*:\s*"AdmissionReview"/;
const API_VERSION = /"apiVersion"\s*:\s*"([^"\\]{1,64})"/;

/** The apiVersion and request.uid of a review, from its first bytes, or undefined. */
export function readEnvelopeHead(head: string): EnvelopeHead | undefined {
  const request = REQUEST_UID.exec(head);
  if (!request) return undefined;
  const before = head.slice(0, request.index);
  const apiVersion = API_VERSION.exec(before)?.[1];
  if (!KIND.test(before) || !REVIEW_VERSIONS.includes(apiVersion as ReviewVersion)) return undefined;
  return { apiVersion: apiVersion as ReviewVersion, uid: request[1] as string };
}

export class BodyError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

/**
 * Reads `stream` to its end. Its text is kept while the body is within `bodyLimitBytes` and its
 * bytes beyond the first UNCOUNTED_BODY_BYTES fit in `budget`; past either, the bytes read so far
 * are dropped, the rest is read without being kept, and the result is an UnreadBody. The budget
 * is given back when `done` returns (the text has been parsed by then) or the stream fails.
 */
export function readBody(
  stream: Readable,
  declaredBytes: number | undefined,
  bodyLimitBytes: number,
  budget: BodyBudget,
  done: (error: BodyError | null, body?: string | UnreadBody) => void,
): void {
  let chunks: Buffer[] = [];
  let receivedBytes = 0;
  let countedBytes = 0;
  let shed: ShedReason | undefined = declaredBytes !== undefined && declaredBytes > bodyLimitBytes ? 'body_too_large' : undefined;
  let head = Buffer.alloc(0);
  let finished = false;

  const release = (): void => {
    budget.give(countedBytes);
    countedBytes = 0;
  };
  const keepHead = (chunk: Buffer): void => {
    if (head.length < HEAD_BYTES) head = Buffer.concat([head, chunk.subarray(0, HEAD_BYTES - head.length)]);
  };
  const shedFromNow = (reason: ShedReason): void => {
    shed = reason;
    for (const chunk of chunks) keepHead(chunk);
    chunks = [];
    release();
  };
  const finish = (error: BodyError | null, body?: string | UnreadBody): void => {
    if (finished) return;
    finished = true;
    stream.removeListener('data', onData);
    stream.removeListener('end', onEnd);
    stream.removeListener('error', onFailure);
    stream.removeListener('close', onFailure);
    try {
      done(error, body);
    } finally {
      chunks = [];
      release();
    }
  };

  function onData(chunk: Buffer | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    receivedBytes += bytes.length;
    if (shed !== undefined) {
      keepHead(bytes);
      return;
    }
    chunks.push(bytes);
    if (receivedBytes > bodyLimitBytes) {
      shedFromNow('body_too_large');
      return;
    }
    const toCount = Math.max(0, receivedBytes - UNCOUNTED_BODY_BYTES) - countedBytes;
    if (toCount > 0) {
      if (!budget.take(toCount)) {
        shedFromNow('overloaded');
        return;
      }
      countedBytes += toCount;
    }
  }

  function onEnd(): void {
    if (declaredBytes !== undefined && receivedBytes !== declaredBytes) {
      finish(new BodyError(`body has ${receivedBytes} bytes, Content-Length says ${declaredBytes}`, 400));
      return;
    }
    if (shed !== undefined) {
      finish(null, new UnreadBody(shed, receivedBytes, readEnvelopeHead(head.toString('utf8'))));
      return;
    }
    const only = chunks.length === 1 ? chunks[0] : undefined;
    finish(null, only ? only.toString('utf8') : Buffer.concat(chunks, receivedBytes).toString('utf8'));
  }

  // The client went away or the read deadline closed the connection: nobody is left to answer.
  function onFailure(error?: Error): void {
    finish(new BodyError(`body not received: ${error?.message ?? 'connection closed'}`, 408));
  }

  stream.on('data', onData);
  stream.on('end', onEnd);
  stream.on('error', onFailure);
  stream.on('close', onFailure);
  stream.resume();
}
