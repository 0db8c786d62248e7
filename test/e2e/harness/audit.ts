// Reads the control plane's audit log, where the webhook's audit annotations end up
// (docs/kubernetes.md §1: stored as `<webhook name>/<key>`, invalid keys silently dropped).
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export const AUDIT_LOG_ENV = 'SANDBOX_WEBHOOK_E2E_AUDIT_LOG';

/** The fields of an audit.k8s.io/v1 Event that tests look at. */
export interface AuditEvent {
  auditID: string;
  stage: string;
  verb: string;
  requestURI: string;
  user?: { username?: string; groups?: string[] };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string; apiVersion?: string };
  responseStatus?: { code?: number; message?: string; reason?: string };
  annotations?: Record<string, string>;
  stageTimestamp?: string;
}

function auditLogPath(path: string | undefined): string {
  const resolved = path ?? process.env[AUDIT_LOG_ENV];
  if (!resolved) throw new Error(`no audit log: pass a path or set ${AUDIT_LOG_ENV} (test/e2e/global-setup.ts sets it)`);
  return resolved;
}

/** Every event in the audit log so far, oldest first. */
export function readAuditEvents(path?: string): AuditEvent[] {
  let text: string;
  try {
    text = readFileSync(auditLogPath(path), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  // The last line may still be being written: keep only complete ones.
  return text
    .split('\n')
    .filter((line) => line.startsWith('{') && line.endsWith('}'))
    .map((line) => JSON.parse(line) as AuditEvent);
}

/** Polls the audit log until an event satisfies `predicate`; returns it. */
export async function waitForAuditEvent(
  predicate: (event: AuditEvent) => boolean,
  options: { path?: string; timeoutMs?: number } = {},
): Promise<AuditEvent> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readAuditEvents(options.path).find(predicate);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no matching audit event within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** The ResponseComplete event of a pod create in `namespace` (named `name`, if given). */
export function podCreateEvent(namespace: string, name?: string): (event: AuditEvent) => boolean {
  return (event) =>
    event.stage === 'ResponseComplete' &&
    event.verb === 'create' &&
    event.objectRef?.resource === 'pods' &&
    event.objectRef.subresource === undefined &&
    event.objectRef.namespace === namespace &&
    (name === undefined || event.objectRef.name === name);
}
