// The two things cluster/ asks of the API server: a JSON GET with a hard deadline, and a watch stream.
//
// Credentials come from a kubeconfig (kubeconfig.ts, client-node's KubeConfig in the part we use), applied
// afresh to every request (applyToHTTPSOptions): in a pod the ServiceAccount token file is re-read
// every minute (client-node src/file_auth.ts), so rotated bound tokens are picked up.
//
// The transport is our own rather than client-node's Watch (src/watch.ts, 1.4.0) because that one
// cannot bound a request: its `AbortSignal.timeout(30000)` is overwritten on the next line, and the
// abort controller is only handed out once the response headers arrived, so a hung connect can be
// neither timed out nor cancelled. An admission webhook must never wait on the API server unbounded.

import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { Credentials } from './kubeconfig.js';
import { isRecord } from '../json.js';


export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** One line of a watch stream (apimachinery pkg/apis/meta/v1 WatchEvent). */
export interface WatchEvent {
  readonly type: WatchEventType;
  /** the object; for ERROR a metav1.Status */
  readonly object: Record<string, unknown>;
}

export interface WatchStream extends AsyncIterable<WatchEvent> {
  /** Ends the stream and closes the connection; iteration then ends. */
  close(): void;
}

export interface GetOptions {
  /** the whole request, connect to last byte */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export interface WatchOptions {
  /** until the response headers arrive */
  readonly connectTimeoutMs: number;
  /** the longest the stream may stay open; past it the connection is cut and iteration throws */
  readonly deadlineMs: number;
  readonly signal?: AbortSignal;
}

export interface KubeApi {
  /** the API server's address, for logs */
  readonly server: string;
  /** Resolves with any HTTP status and the parsed JSON body; rejects on transport errors, deadline, abort. */
  get(path: string, options: GetOptions): Promise<{ status: number; body: unknown }>;
  /** Resolves once the server accepted the watch (HTTP 200); rejects with ApiError on any other status. */
  watch(path: string, options: WatchOptions): Promise<WatchStream>;
}

/** Writes, for the few objects the webhook keeps itself (the audit's Lease). */
export interface KubeWriteApi extends Pick<KubeApi, 'get'> {
  /** A JSON body; resolves with any HTTP status and the parsed JSON body; rejects on transport errors, deadline, abort. */
  sendJson(method: 'POST' | 'PUT', path: string, body: unknown, options: GetOptions): Promise<{ status: number; body: unknown }>;
}

/** An answer from the API server other than success, with its metav1.Status details when it sent them. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** From an HTTP status and the body the server sent (a metav1.Status, or anything else). */
  static from(statusCode: number, body: unknown, what: string): ApiError {
    const status = isRecord(body) ? body : {};
    const message = typeof status.message === 'string' && status.message !== '' ? status.message : `HTTP ${statusCode}`;
    const reason = typeof status.reason === 'string' ? status.reason : undefined;
    return new ApiError(statusCode, `${what}: ${message}`, reason);
  }
}

export class DeadlineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeadlineError';
  }
}


// A Status body is small; anything bigger on an error path is not worth reading.
const ERROR_BODY_LIMIT_BYTES = 64 * 1024;

async function readBody(response: IncomingMessage, limitBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) break;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`${what}: the API server sent a body that is not JSON (${JSON.stringify(text.slice(0, 80))})`);
  }
}

function parseWatchEvent(line: string): WatchEvent {
  const event = parseJson(line, 'watch event');
  if (!isRecord(event) || typeof event.type !== 'string' || !isRecord(event.object)) {
    throw new Error(`malformed watch event: ${line.slice(0, 120)}`);
  }
  if (!['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'].includes(event.type)) {
    throw new Error(`unknown watch event type ${JSON.stringify(event.type)}`);
  }
  return { type: event.type as WatchEventType, object: event.object };
}

export class HttpKubeApi implements KubeApi, KubeWriteApi {
  readonly server: string;

  constructor(private readonly kubeConfig: Credentials) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster (check current-context)');
    // Appended, not resolved: a server URL may carry a path prefix (an API proxy), as client-node does.
    this.server = cluster.server.replace(/\/+$/, '');
  }

  /** Sends a request and resolves with the response once its headers arrived, or rejects after timeoutMs. */
  private async open(
    path: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    method = 'GET',
    payload?: { body: string; contentType: string },
  ): Promise<{ request: ClientRequest; response: IncomingMessage }> {
    const options: RequestOptions = { headers: {} };
    await this.kubeConfig.applyToHTTPSOptions(options);
    signal?.throwIfAborted();
    const url = new URL(`${this.server}${path}`);
    const send = url.protocol === 'http:' ? httpRequest : httpsRequest;
    return new Promise((resolve, reject) => {
      const request = send(url, {
        ...options,
        method,
        headers: { ...options.headers, accept: 'application/json', ...(payload ? { 'content-type': payload.contentType } : {}) },
        ...(signal ? { signal } : {}),
      });
      const timer = setTimeout(() => request.destroy(new DeadlineError(`${method} ${url.pathname}: no answer within ${timeoutMs} ms`)), timeoutMs);
      request.once('response', (response) => {
        clearTimeout(timer);
        resolve({ request, response });
      });
      request.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      request.end(payload?.body);
    });
  }

  get(path: string, options: GetOptions): Promise<{ status: number; body: unknown }> {
    return this.send('GET', path, options);
  }

  sendJson(method: 'POST' | 'PUT', path: string, body: unknown, options: GetOptions): Promise<{ status: number; body: unknown }> {
    return this.send(method, path, { ...options, body: JSON.stringify(body) });
  }

  /**
   * Any request with an optional body (e.g. a server-side apply PATCH), under the same whole-request
   * deadline as get(); resolves with any HTTP status and the parsed JSON body.
   */
  async send(
    method: string,
    path: string,
    options: GetOptions & { body?: string; contentType?: string },
  ): Promise<{ status: number; body: unknown }> {
    const started = Date.now();
    const payload = options.body === undefined ? undefined : { body: options.body, contentType: options.contentType ?? 'application/json' };
    const { request, response } = await this.open(path, options.timeoutMs, options.signal, method, payload);
    // Once the response has begun, a destroyed request surfaces on it as a bare "aborted": keep the cause.
    let cause: Error | undefined;
    const timer = setTimeout(
      () => request.destroy((cause = new DeadlineError(`${method} ${path}: no complete answer within ${options.timeoutMs} ms`))),
      Math.max(0, options.timeoutMs - (Date.now() - started)),
    );
    try {
      const text = await readBody(response, Number.POSITIVE_INFINITY);
      return { status: response.statusCode ?? 0, body: parseJson(text, `${method} ${path}`) };
    } catch (error) {
      throw cause ?? error;
    } finally {
      clearTimeout(timer);
    }
  }

  async watch(path: string, options: WatchOptions): Promise<WatchStream> {
    const { request, response } = await this.open(path, options.connectTimeoutMs, options.signal);
    if (response.statusCode !== 200) {
      const timer = setTimeout(() => request.destroy(), options.connectTimeoutMs);
      const text = await readBody(response, ERROR_BODY_LIMIT_BYTES).catch(() => '');
      clearTimeout(timer);
      request.destroy();
      let body: unknown;
      try {
        body = JSON.parse(text) as unknown;
      } catch {
        body = undefined;
      }
      throw ApiError.from(response.statusCode ?? 0, body, `watch ${path.split('?')[0] ?? path}`);
    }
    let cause: Error | undefined;
    const deadline = setTimeout(
      () => request.destroy((cause = new DeadlineError(`the watch stayed open past its ${options.deadlineMs} ms deadline`))),
      options.deadlineMs,
    );
    let closed = false;
    async function* events(): AsyncGenerator<WatchEvent> {
      response.setEncoding('utf8');
      let pending = '';
      try {
        for await (const chunk of response as AsyncIterable<string>) {
          pending += chunk;
          // The API server writes one JSON object per line (apiserver/endpoints/handlers/watch.go).
          for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
            const line = pending.slice(0, newline).trim();
            pending = pending.slice(newline + 1);
            if (line !== '') yield parseWatchEvent(line);
          }
        }
        if (pending.trim() !== '') yield parseWatchEvent(pending.trim());
      } catch (error) {
        if (closed) return;
        throw cause ?? error;
      } finally {
        clearTimeout(deadline);
        request.destroy();
      }
    }
    const iterator = events();
    return {
      [Symbol.asyncIterator]: () => iterator,
      close: () => {
        closed = true;
        clearTimeout(deadline);
        request.destroy();
      },
    };
  }
}
