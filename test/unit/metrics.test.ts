// Metric series come from closed sets whatever a client sends; the info gauges; the metrics port.

import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { offlineFacts } from '../../src/admission/facts.js';
import { buildApp, LOGGED_TEXT_MAX_CHARS } from '../../src/server/app.js';
import { startMetricsServer } from '../../src/server/metrics-server.js';
import {
  admissionLabels,
  decisionDenialReason,
  DENIAL_REASONS_LABELS,
  FAIL_CLOSED_REASONS,
  Metrics,
  type SummaryLabels,
} from '../../src/telemetry/metrics.js';
import { policyFromSpec } from '../support/policy.js';
import { podReview } from '../support/review.js';
import { DENIAL_REASONS } from '../../src/policy/evaluate.js';

const policy = policyFromSpec(`
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
`);

/** Series in a scrape: every sample line. */
function seriesCount(text: string): number {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length;
}

describe('label values come from closed sets', () => {
  it('50 reviews with unique 1 MB operations are bad requests: /metrics stays small, the series count unchanged, no log line long', async () => {
    const lines: string[] = [];
    const metrics = new Metrics();
    const app = await buildApp({ policy: () => policy, cluster: offlineFacts, metrics, logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }) });
    try {
      const send = (operation: string, uid: string) =>
        app.inject({
          method: 'POST',
          url: '/mutate',
          headers: { 'content-type': 'application/json' },
          payload: JSON.stringify(podReview({ uid, operation })),
        });
      // One review with an operation outside the set first, so that its series exists.
      await send('X', 'first');
      const before = await metrics.registry.metrics();
      for (let i = 0; i < 50; i++) {
        const response = await send(`${i}-${'x'.repeat(1_000_000)}`, `u-${i}`);
        // Outside the closed set of operations: a bad request whose answer quotes only a bounded part.
        expect(response.statusCode).toBe(400);
        expect(response.body.length).toBeLessThan(1000);
      }
      const after = await metrics.registry.metrics();
      expect(seriesCount(after)).toBe(seriesCount(before));
      expect(after.length).toBeLessThan(before.length + 1000);
      expect(after).not.toContain('xxxx');
      expect(after).toMatch(/sandbox_webhook_http_rejected_total\{code="400"\} 51/);
      expect(lines.join('')).not.toContain('xxxx');
      for (const line of lines) expect(line.length).toBeLessThan(8 * LOGGED_TEXT_MAX_CHARS);
    } finally {
      await app.close();
    }
  });

  const ruleNames = new Set(['system', 'tenants']);
  const summary = (fields: Partial<SummaryLabels>): SummaryLabels => ({ decision: 'sandbox', rule: 'tenants', outcome: 'patched', ...fields });
  it.each([
    ['a rule of the policy keeps its name', 'CREATE', 'enforce', summary({}), { operation: 'CREATE', decision: 'sandbox', rule: 'tenants', mode: 'enforce', outcome: 'patched' }],
    ['the default action is "default"', 'CREATE', 'enforce', summary({ rule: 'default' }), { rule: 'default' }],
    ['no rule is ""', 'DELETE', 'enforce', summary({ decision: 'none', rule: '', outcome: 'skipped' }), { operation: 'DELETE', decision: 'none', rule: '', outcome: 'skipped' }],
    ['a rule name the policy does not have is "other"', 'CREATE', 'enforce', summary({ rule: 'gone-after-reload' }), { rule: 'other' }],
    ['an operation outside CREATE, UPDATE, DELETE, CONNECT is "other"', 'PATCH', 'audit', summary({}), { operation: 'other', mode: 'audit' }],
    ['an operation that is not a string is "other"', 42, 'enforce', summary({}), { operation: 'other' }],
    ['an unknown decision, mode or outcome is "other"', 'UPDATE', 'dry', summary({ decision: 'maybe', outcome: 'sideways' }), { decision: 'other', mode: 'other', outcome: 'other' }],
  ])('%s', (_name, operation, mode, given, expected) => {
    expect(admissionLabels(operation, mode, given, ruleNames)).toMatchObject(expected);
  });

  it.each([
    ['a reason the decision names is used', summary({ outcome: 'denied', denialReason: 'runtime_class_missing' }), 'runtime_class_missing'],
    ['a reason outside the set is not', summary({ decision: 'deny', outcome: 'denied', denialReason: 'x'.repeat(300) }), 'deny_rule'],
    ['a deny rule without a named reason is deny_rule', summary({ decision: 'deny', outcome: 'denied' }), 'deny_rule'],
    ['a request that could not be read is invalid_request', summary({ decision: 'none', outcome: 'error' }), 'invalid_request'],
    ['anything else is unspecified', summary({ outcome: 'denied' }), 'unspecified'],
  ])('denial reason: %s', (_name, given, reason) => {
    expect(decisionDenialReason(given)).toBe(reason);
  });

  it('the denial counter has a zero series for every decision and fail-closed reason', async () => {
    expect(DENIAL_REASONS_LABELS).toEqual([...DENIAL_REASONS, ...FAIL_CLOSED_REASONS, 'unspecified']);
    const text = await new Metrics().registry.metrics();
    for (const reason of DENIAL_REASONS_LABELS) expect(text).toMatch(new RegExp(`^sandbox_webhook_admission_denials_total\\{reason="${reason}"\\} 0$`, 'm'));
  });

  it('an HTTP status outside the known set is counted as "other"', async () => {
    const metrics = new Metrics();
    metrics.rejected(400);
    metrics.rejected(418);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^sandbox_webhook_http_rejected_total\{code="400"\} 1$/m);
    expect(text).toMatch(/^sandbox_webhook_http_rejected_total\{code="other"\} 1$/m);
  });
});

describe('info gauges', () => {
  it('build_info carries the version and the Node.js version', async () => {
    const text = await new Metrics({ version: '1.2.3' }).registry.metrics();
    expect(text).toContain(`sandbox_webhook_build_info{version="1.2.3",node_version="${process.version}"} 1`);
  });

  it('policy_info carries the first 12 hex digits of the policy file, one series after a reload', async () => {
    const metrics = new Metrics();
    metrics.policyLoaded(3, 'first', new Date(1_000_000));
    metrics.policyLoaded(5, Buffer.from('second'), new Date(2_000_000));
    const text = await metrics.registry.metrics();
    const sha = createHash('sha256').update('second').digest('hex').slice(0, 12);
    expect([...text.matchAll(/^sandbox_webhook_policy_info\{.*$/gm)].map((m) => m[0])).toEqual([`sandbox_webhook_policy_info{sha256="${sha}"} 1`]);
    expect(text).toMatch(/^sandbox_webhook_policy_rules 5$/m);
    expect(text).toMatch(/^sandbox_webhook_policy_last_reload_success_timestamp_seconds 2000$/m);
  });
});

describe('the metrics port', () => {
  const get = (port: number, path: string, method = 'GET') =>
    new Promise<{ status: number; body: string; type: string | undefined }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: res.headers['content-type'] }));
      });
      req.on('error', reject);
      req.end();
    });

  it.each([
    ['GET /metrics is the Prometheus text', 'GET', '/metrics', 200, /^# HELP sandbox_webhook_/m],
    ['GET /metrics with a query string too', 'GET', '/metrics?x=1', 200, /sandbox_webhook_build_info/],
    ['another path is 404', 'GET', '/mutate', 404, /serves GET \/metrics/],
    ['POST /metrics is 405', 'POST', '/metrics', 405, /use GET/],
  ] as const)('%s', async (_name, method, path, status, body) => {
    const server = await startMetricsServer(new Metrics().registry, 0, '127.0.0.1');
    try {
      const response = await get(server.port, path, method);
      expect(response.status).toBe(status);
      expect(response.body).toMatch(body);
    } finally {
      await server.close();
    }
  });

  it('a port in use is an error, not a silent failure', async () => {
    const first = await startMetricsServer(new Metrics().registry, 0, '127.0.0.1');
    try {
      await expect(startMetricsServer(new Metrics().registry, first.port, '127.0.0.1')).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await first.close();
    }
  });
});
