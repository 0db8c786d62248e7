// The chart's operational surface against real tools:
//   1. the PrometheusRule, rendered from the chart: `promtool check rules`, and `promtool test rules` with
//      input series for every alert (each must fire on its case and stay quiet on a healthy one);
//   2. a real Prometheus (Debian's, hack/install-prometheus.sh) scraping, every second, the webhook (run
//      as the chart's replica: harness/chart-pods.ts) and the e2e apiserver while pods are created:
//      every vector selector of every alert and dashboard query returns data, except the ones listed in
//      EXPECTED_EMPTY with the reason; every full expression evaluates without error;
//   3. a screenshot of Prometheus's graph of sandbox coverage, with headless Chromium when installed
//      (SANDBOX_WEBHOOK_UPDATE_SCREENSHOT=1 writes it to docs/images/sandbox-coverage.png).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AdmissionregistrationV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { CHART, Helm, type Manifest } from './harness/helm.js';
import { runChartReplica, type ChartReplica } from './harness/chart-pods.js';
import { findExecutable, promtool, startPrometheus, type RunningPrometheus, type ScrapeJob } from './harness/prometheus.js';
import { createNamespace, deleteNamespace, freePort, generateWebhookCerts, loadKubeConfig, makeTempDir, removeTempDir, REPO_ROOT } from './harness/index.js';
import { setTimeout as sleep } from 'node:timers/promises';

const execFileAsync = promisify(execFile);

const SUFFIX = randomBytes(3).toString('hex');
const RELEASE = `swm-${SUFFIX}`;
const FULLNAME = `${RELEASE}-sandbox-webhook`;
const METRICS_JOB = `${FULLNAME}-metrics`;
const PODS_WEBHOOK = 'sandbox.sandbox-webhook.io';
const WORKLOADS_WEBHOOK = 'workloads.sandbox-webhook.io';

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleGroup {
  name: string;
  rules: Rule[];
}

/** The PrometheusRule's groups as the chart renders them for release RELEASE in namespace `ns`. */
async function renderedRules(helm: Helm, ns: string): Promise<RuleGroup[]> {
  const manifests = await helm.template(RELEASE, ns, { prometheusRule: { enabled: true } }, [
    '--api-versions',
    'monitoring.coreos.com/v1',
    '--show-only',
    'templates/prometheusrule.yaml',
  ]);
  const rule = manifests.find((m) => m.kind === 'PrometheusRule') as (Manifest & { spec: { groups: RuleGroup[] } }) | undefined;
  if (!rule) throw new Error('no PrometheusRule rendered');
  return rule.spec.groups;
}

// ---------------------------------------------------------------------------------------------
// promtool test rules: one case per alert that must fire, one healthy case that must not.

const NS = 'sandbox-webhook';
const W = `job="${METRICS_JOB}", namespace="${NS}"`;
const A = 'job="apiserver"';
const BASE = { component: 'sandbox-webhook' };

interface AlertCase {
  name: string;
  alert: string;
  series: { series: string; values: string }[];
  evalTime: string;
  /** Labels of each expected alert, besides alertname and the rule's labels; [] = must not fire. */
  fires: Record<string, string>[];
  severity: 'critical' | 'warning';
}

const histogram = (name: string, labels: string, slowCount: string, fastCount: string): { series: string; values: string }[] => [
  { series: `${name}{${labels}, le="0.005"}`, values: fastCount },
  { series: `${name}{${labels}, le="0.5"}`, values: fastCount },
  { series: `${name}{${labels}, le="5"}`, values: slowCount },
  { series: `${name}{${labels}, le="+Inf"}`, values: slowCount },
];

const ALERT_CASES: AlertCase[] = [
  {
    name: 'calls that fail (no answer, TLS, timeout) fire SandboxWebhookCallsFailing',
    alert: 'SandboxWebhookCallsFailing',
    series: [{ series: `apiserver_admission_webhook_rejection_count{${A}, name="${PODS_WEBHOOK}", error_type="calling_webhook_error", operation="CREATE", rejection_code="0", type="admit"}`, values: '0+6x20' }],
    evalTime: '10m',
    fires: [{ name: PODS_WEBHOOK }],
    severity: 'critical',
  },
  {
    name: 'denials the webhook decided (no_error) do not fire SandboxWebhookCallsFailing',
    alert: 'SandboxWebhookCallsFailing',
    series: [{ series: `apiserver_admission_webhook_rejection_count{${A}, name="${PODS_WEBHOOK}", error_type="no_error", operation="CREATE", rejection_code="403", type="admit"}`, values: '0+6x20' }],
    evalTime: '10m',
    fires: [],
    severity: 'critical',
  },
  {
    name: 'a pod admitted without the pods webhook fires SandboxWebhookFailedOpen',
    alert: 'SandboxWebhookFailedOpen',
    series: [{ series: `apiserver_admission_webhook_fail_open_count{${A}, name="${PODS_WEBHOOK}", type="admit"}`, values: '0 0 1 1 1 1' }],
    evalTime: '5m',
    fires: [{ name: PODS_WEBHOOK }],
    severity: 'critical',
  },
  {
    name: 'the workloads webhook failing open (Ignore by design) does not fire SandboxWebhookFailedOpen',
    alert: 'SandboxWebhookFailedOpen',
    series: [{ series: `apiserver_admission_webhook_fail_open_count{${A}, name="${WORKLOADS_WEBHOOK}", type="admit"}`, values: '0 0 1 1 1 1' }],
    evalTime: '5m',
    fires: [],
    severity: 'critical',
  },
  {
    name: 'a denial by the backstop policy fires SandboxWebhookBypassed',
    alert: 'SandboxWebhookBypassed',
    series: [{ series: `apiserver_validating_admission_policy_check_total{${A}, policy="${FULLNAME}-require-sandbox", policy_binding="${FULLNAME}-require-sandbox", enforcement_action="deny", error_type="no_error"}`, values: '0 0 2 2 2' }],
    evalTime: '4m',
    fires: [{}],
    severity: 'warning',
  },
  {
    name: 'apiserver-side p99 above half the timeout fires SandboxWebhookApiserverLatencyHigh',
    alert: 'SandboxWebhookApiserverLatencyHigh',
    series: histogram('apiserver_admission_webhook_admission_duration_seconds_bucket', `${A}, name="${PODS_WEBHOOK}", operation="CREATE", rejected="false", type="admit"`, '0+10x30', '0x30'),
    evalTime: '20m',
    fires: [{ name: PODS_WEBHOOK }],
    severity: 'warning',
  },
  {
    name: 'fast apiserver-side calls do not fire SandboxWebhookApiserverLatencyHigh',
    alert: 'SandboxWebhookApiserverLatencyHigh',
    series: histogram('apiserver_admission_webhook_admission_duration_seconds_bucket', `${A}, name="${PODS_WEBHOOK}", operation="CREATE", rejected="false", type="admit"`, '0+10x30', '0+10x30'),
    evalTime: '20m',
    fires: [],
    severity: 'warning',
  },
  {
    name: 'every replica down fires SandboxWebhookDown',
    alert: 'SandboxWebhookDown',
    series: [{ series: `up{${W}, pod="a"}`, values: '0x10' }],
    evalTime: '8m',
    fires: [{}],
    severity: 'critical',
  },
  {
    name: 'no replica scraped at all fires SandboxWebhookDown',
    alert: 'SandboxWebhookDown',
    series: [{ series: 'up{job="other"}', values: '1x10' }],
    evalTime: '8m',
    fires: [{ job: METRICS_JOB, namespace: NS }],
    severity: 'critical',
  },
  {
    name: 'one replica up keeps SandboxWebhookDown quiet',
    alert: 'SandboxWebhookDown',
    series: [{ series: `up{${W}, pod="a"}`, values: '0x10' }, { series: `up{${W}, pod="b"}`, values: '1x10' }],
    evalTime: '8m',
    fires: [],
    severity: 'critical',
  },
  {
    name: 'an unavailable replica for 15 minutes fires SandboxWebhookReplicasUnavailable',
    alert: 'SandboxWebhookReplicasUnavailable',
    series: [{ series: `kube_deployment_status_replicas_unavailable{namespace="${NS}", deployment="${FULLNAME}"}`, values: '1x30' }],
    evalTime: '20m',
    fires: [{ namespace: NS, deployment: FULLNAME }],
    severity: 'warning',
  },
  {
    name: 'fail-closed answers fire SandboxWebhookFailingClosed with their reason',
    alert: 'SandboxWebhookFailingClosed',
    series: [
      { series: `sandbox_webhook_admission_fail_closed_total{${W}, pod="a", reason="deadline"}`, values: '0+3x20' },
      { series: `sandbox_webhook_admission_fail_closed_total{${W}, pod="a", reason="overloaded"}`, values: '0x20' },
    ],
    evalTime: '10m',
    fires: [{ reason: 'deadline' }],
    severity: 'warning',
  },
  {
    name: 'a failed policy reload fires SandboxWebhookPolicyReloadFailing',
    alert: 'SandboxWebhookPolicyReloadFailing',
    series: [{ series: `sandbox_webhook_policy_reloads_total{${W}, pod="a", result="failure"}`, values: '0 0 1 1 1' }],
    evalTime: '4m',
    fires: [{ pod: 'a' }],
    severity: 'warning',
  },
  {
    name: 'two policy hashes among the replicas fire SandboxWebhookPolicyMismatch',
    alert: 'SandboxWebhookPolicyMismatch',
    series: [
      { series: `sandbox_webhook_policy_info{${W}, pod="a", sha256="aaa"}`, values: '1x20' },
      { series: `sandbox_webhook_policy_info{${W}, pod="b", sha256="bbb"}`, values: '1x20' },
    ],
    evalTime: '15m',
    fires: [{}],
    severity: 'warning',
  },
  {
    name: 'one policy hash keeps SandboxWebhookPolicyMismatch quiet',
    alert: 'SandboxWebhookPolicyMismatch',
    series: [
      { series: `sandbox_webhook_policy_info{${W}, pod="a", sha256="aaa"}`, values: '1x20' },
      { series: `sandbox_webhook_policy_info{${W}, pod="b", sha256="aaa"}`, values: '1x20' },
    ],
    evalTime: '15m',
    fires: [],
    severity: 'warning',
  },
  {
    name: 'an informer not synced for 5 minutes fires SandboxWebhookInformerNotSynced',
    alert: 'SandboxWebhookInformerNotSynced',
    series: [
      { series: `sandbox_webhook_informer_synced{${W}, pod="a", resource="namespaces"}`, values: '0x20' },
      { series: `sandbox_webhook_informer_synced{${W}, pod="a", resource="runtimeclasses"}`, values: '1x20' },
    ],
    evalTime: '10m',
    fires: [{ pod: 'a', resource: 'namespaces' }],
    severity: 'warning',
  },
  {
    name: 'a certificate with 10 days left fires the 14-day warning',
    alert: 'SandboxWebhookCertificateExpiresSoon',
    series: [{ series: `sandbox_webhook_tls_certificate_expiry_timestamp_seconds{${W}, pod="a"}`, values: `${10 * 86400}x5` }],
    evalTime: '1m',
    fires: [{}],
    severity: 'warning',
  },
  {
    name: 'a certificate with 10 days left does not fire the 3-day alert',
    alert: 'SandboxWebhookCertificateExpiresVerySoon',
    series: [{ series: `sandbox_webhook_tls_certificate_expiry_timestamp_seconds{${W}, pod="a"}`, values: `${10 * 86400}x5` }],
    evalTime: '1m',
    fires: [],
    severity: 'critical',
  },
  {
    name: 'a certificate with 2 days left fires the 3-day alert',
    alert: 'SandboxWebhookCertificateExpiresVerySoon',
    series: [{ series: `sandbox_webhook_tls_certificate_expiry_timestamp_seconds{${W}, pod="a"}`, values: `${2 * 86400}x5` }],
    evalTime: '1m',
    fires: [{}],
    severity: 'critical',
  },
  {
    name: 'a webhook p99 above a quarter of the timeout fires SandboxWebhookLatencyHigh',
    alert: 'SandboxWebhookLatencyHigh',
    series: histogram('sandbox_webhook_admission_duration_seconds_bucket', `${W}, pod="a", outcome="patched"`, '0+10x30', '0x30'),
    evalTime: '20m',
    fires: [{}],
    severity: 'warning',
  },
];

/** The promtool unit-test file for ALERT_CASES, one test group per case (so their series never mix). */
function promtoolTests(): string {
  return stringify({
    rule_files: ['rules.yaml'],
    evaluation_interval: '1m',
    tests: ALERT_CASES.map((c) => ({
      name: c.name,
      interval: '1m',
      input_series: c.series,
      alert_rule_test: [
        {
          eval_time: c.evalTime,
          alertname: c.alert,
          exp_alerts: c.fires.map((labels) => ({ exp_labels: { ...labels, ...BASE, severity: c.severity } })),
        },
      ],
    })),
  });
}

let dir = '';
let helm: Helm;
let groups: RuleGroup[] = [];

beforeAll(async () => {
  dir = makeTempDir('chart-monitoring');
  helm = new Helm(join(dir, 'helm'), inject('kubeconfig'));
  groups = await renderedRules(helm, NS);
});

afterAll(() => {
  if (dir) removeTempDir(dir);
});

describe('the PrometheusRule, checked by promtool', () => {
  it('promtool check rules accepts every rule, annotations included', async () => {
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups }));
    const result = await promtool(['check', 'rules', 'rules.yaml'], dir);
    process.stderr.write(`[e2e] promtool check rules:\n${result.output}\n`);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('every alert has a promtool case that makes it fire', () => {
    const alerts = groups.flatMap((g) => g.rules.map((r) => r.alert)).sort();
    const firing = [...new Set(ALERT_CASES.filter((c) => c.fires.length > 0).map((c) => c.alert))].sort();
    expect(firing).toEqual(alerts);
  });

  it('promtool test rules: each alert fires on its input series, and stays quiet on the healthy ones', async () => {
    // Annotations left out of the rules under test: exp_alerts would have to repeat their text.
    const bare = groups.map((g) => ({ name: g.name, rules: g.rules.map(({ annotations: _annotations, ...rule }) => rule) }));
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: bare }));
    writeFileSync(join(dir, 'alerts.test.yaml'), promtoolTests());
    const result = await promtool(['test', 'rules', 'alerts.test.yaml'], dir);
    process.stderr.write(`[e2e] promtool test rules (${ALERT_CASES.length} cases):\n${result.output}\n`);
    expect(result.code, result.output).toBe(0);
    expect(result.output).toContain('SUCCESS');
  });

  it('promtool test rules can fail: an alert expected on a healthy case is reported', async () => {
    const broken = ALERT_CASES.find((c) => c.fires.length === 0 && c.alert === 'SandboxWebhookDown');
    if (!broken) throw new Error('no healthy SandboxWebhookDown case');
    writeFileSync(
      join(dir, 'broken.test.yaml'),
      stringify({
        rule_files: ['rules.yaml'],
        tests: [{ interval: '1m', input_series: broken.series, alert_rule_test: [{ eval_time: broken.evalTime, alertname: broken.alert, exp_alerts: [{ exp_labels: { ...BASE, severity: 'critical' } }] }] }],
      }),
    );
    const result = await promtool(['test', 'rules', 'broken.test.yaml'], dir);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain('FAILED');
  });
});

// ---------------------------------------------------------------------------------------------
// a real Prometheus

/**
 * Selectors that are empty in a healthy run, and why. Keyed by the selector as written in the query
 * (after the dashboard's variables are filled in).
 */
const EXPECTED_EMPTY: { match: RegExp; why: string }[] = [
  { match: /^apiserver_admission_webhook_fail_open_count\{/, why: 'no call failed open: the webhook answered every one' },
  { match: /^apiserver_admission_webhook_rejection_count\{.*error_type="calling_webhook_error"/, why: 'no call failed' },
  { match: /^kube_deployment_status_replicas_unavailable\{/, why: 'kube-state-metrics does not run here (no kubelet, no Deployment pods)' },
];

/** Every `name{labels}` in a PromQL expression. */
function selectors(expr: string): string[] {
  return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}/g)].map((m) => `${m[1]}{${m[2]}}`);
}

describe('a real Prometheus scraping the webhook and the apiserver', () => {
  const kc = loadKubeConfig(inject('kubeconfig'));
  const core = kc.makeApiClient(CoreV1Api);
  let namespace = '';
  let tenant = '';
  let allowed = '';
  /** Tenant-labelled, yet allowed by a rule: the backstop policy denies what the webhook lets through. */
  let bypass = '';
  let replica: ChartReplica | undefined;
  let prometheus: RunningPrometheus | undefined;
  let dashboardQueries: string[] = [];
  let installed = false;

  beforeAll(async () => {
    namespace = await createNamespace(kc, 'chart-mon');
    tenant = await createNamespace(kc, 'chart-mon-tenant', { 'sandbox-webhook.io/tenant': 'true' });
    allowed = await createNamespace(kc, 'chart-mon-platform');
    bypass = await createNamespace(kc, 'chart-mon-bypass', { 'sandbox-webhook.io/tenant': 'true' });
    const certDir = join(dir, 'certs');
    await generateWebhookCerts(certDir);
    const port = await freePort();
    const runtimeClass = `gvisor-mon-${SUFFIX}`;
    const values = {
      webhook: { url: `https://127.0.0.1:${port}/mutate`, failurePolicy: 'Fail' },
      certificates: { mode: 'existingSecret', existingSecret: { name: 'local', caBundle: readFileSync(join(certDir, 'ca.crt'), 'utf8') } },
      policy: {
        runtimeClassName: runtimeClass,
        acceptedRuntimeClasses: [runtimeClass],
        rules: [{ name: 'platform', match: { namespaces: [allowed, bypass] }, action: 'allow' }],
      },
      runtimeClass: { create: true, name: runtimeClass },
      grafanaDashboard: { enabled: true },
    };
    installed = true;
    const manifests = await helm.template(RELEASE, namespace, values);
    const dashboard = manifests.find((m) => m.kind === 'ConfigMap' && m.metadata.name === `${FULLNAME}-dashboard`) as (Manifest & { data: Record<string, string> }) | undefined;
    const json = JSON.parse(dashboard?.data['sandbox-webhook.json'] ?? '{}') as { panels: { targets: { expr: string }[] }[] };
    dashboardQueries = json.panels.flatMap((p) => p.targets.map((t) => t.expr));
    await helm.ok(['install', RELEASE, CHART, '--namespace', namespace, '-f', helm.valuesFile(values)]);
    replica = await runChartReplica({ kc, namespace, fullname: FULLNAME, dir: join(dir, 'replica'), certDir, port });
    // The replica's metrics port, plain HTTP (docs/metrics.md), as the chart's metrics Service exposes it.
    const metricsTarget = new URL(replica.webhook.metricsUrl).host;
    const admission = kc.makeApiClient(AdmissionregistrationV1Api);
    for (let i = 0; ; i++) {
      if (await admission.readMutatingWebhookConfiguration({ name: FULLNAME }).then(() => true, () => false)) break;
      if (i > 100) throw new Error('the replica did not register the webhook');
      await sleep(100);
    }

    const user = kc.getCurrentUser();
    const cluster = kc.getCurrentCluster();
    for (const [file, data] of [['admin.crt', user?.certData], ['admin.key', user?.keyData], ['ca.crt', cluster?.caData]] as const) {
      writeFileSync(join(dir, file), Buffer.from(data ?? '', 'base64'));
    }
    const webhookJob: ScrapeJob = {
      job_name: METRICS_JOB,
      static_configs: [{ targets: [metricsTarget], labels: { namespace, pod: 'replica-0' } }],
    };
    const apiserverJob: ScrapeJob = {
      job_name: 'apiserver',
      scheme: 'https',
      tls_config: { ca_file: join(dir, 'ca.crt'), cert_file: join(dir, 'admin.crt'), key_file: join(dir, 'admin.key') },
      static_configs: [{ targets: [new URL(cluster?.server ?? '').host] }],
    };
    mkdirSync(join(dir, 'prometheus'));
    prometheus = await startPrometheus(join(dir, 'prometheus'), [webhookJob, apiserverJob]);

    // Traffic for a few scrapes: sandboxed, allowed and denied pods.
    const create = (ns: string, spec: Partial<NonNullable<V1Pod['spec']>> = {}) =>
      core
        .createNamespacedPod({ namespace: ns, dryRun: 'All', body: { metadata: { generateName: 'mon-' }, spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10' }], ...spec } } })
        .catch(() => undefined);
    const until = Date.now() + 12_000;
    while (Date.now() < until) {
      await Promise.all([create(tenant), create(tenant), create(allowed), create(tenant, { hostNetwork: true }), create(bypass)]);
      await sleep(200);
    }
    await sleep(2500);
  });

  afterAll(async () => {
    await prometheus?.stop();
    await replica?.stop();
    if (installed) await helm.run(['uninstall', RELEASE, '--namespace', namespace, '--no-hooks']);
    await kc.makeApiClient(AdmissionregistrationV1Api).deleteMutatingWebhookConfiguration({ name: FULLNAME }).catch(() => undefined);
    for (const ns of [namespace, tenant, allowed, bypass]) if (ns) await deleteNamespace(kc, ns);
  });

  it('scrapes both targets', async () => {
    const targets = await prometheus?.targets();
    expect(targets?.map((t) => [t.job, t.health, t.lastError]).sort()).toEqual([
      ['apiserver', 'up', ''],
      [METRICS_JOB, 'up', ''],
    ]);
  });

  /** The dashboard's Grafana variables, filled in as Grafana would for this release. */
  const fill = (expr: string): string =>
    expr
      .replaceAll('$__rate_interval', '1m')
      .replaceAll('$job', METRICS_JOB)
      .replaceAll('$apiserver_job', 'apiserver')
      .replaceAll('$webhook', `${PODS_WEBHOOK}|${WORKLOADS_WEBHOOK}`)
      .replaceAll('$timeout_seconds', '5');

  it('every alert and dashboard expression evaluates, and every selector in them returns data but the expected-empty ones', async () => {
    if (!prometheus) throw new Error('no prometheus');
    const alertExprs = groups.flatMap((g) => g.rules.map((r) => r.expr.replaceAll(`namespace="${NS}"`, `namespace="${namespace}"`).replaceAll(`${RELEASE}-sandbox-webhook-metrics`, METRICS_JOB)));
    const expressions = [...alertExprs, ...dashboardQueries.map(fill)];
    const report: string[] = [];
    const empty: string[] = [];
    for (const expr of expressions) {
      await prometheus.query(expr); // throws on a bad expression
      for (const selector of selectors(expr)) {
        const samples = await prometheus.query(`count(${selector})`);
        const expected = EXPECTED_EMPTY.find((e) => e.match.test(selector));
        if (samples.length > 0) report.push(`data   ${selector}`);
        else if (expected) report.push(`empty  ${selector} (expected: ${expected.why})`);
        else empty.push(selector);
      }
    }
    process.stderr.write(`[e2e] Prometheus queries:\n${[...new Set(report)].join('\n')}\n`);
    expect([...new Set(empty)]).toEqual([]);
  });

  it("the backstop alert's metric exists with the labels it selects on, once the policy denied a pod the webhook let through", async () => {
    if (!prometheus) throw new Error('no prometheus');
    const samples = await prometheus.query(`apiserver_validating_admission_policy_check_total{job="apiserver", policy="${FULLNAME}-require-sandbox", enforcement_action="deny"}`);
    expect(samples.length).toBeGreaterThan(0);
    expect(samples[0]?.value).toBeGreaterThan(0);
  });

  it('sandbox coverage reads the mix of pods created: some sandboxed, not all', async () => {
    const coverage = dashboardQueries.find((q) => q.includes('decision="sandbox"'));
    if (!coverage || !prometheus) throw new Error('no sandbox coverage query');
    const [sample] = await prometheus.query(fill(coverage));
    expect(sample?.value).toBeGreaterThan(0.2);
    expect(sample?.value).toBeLessThan(0.9);
  });

  it('a screenshot of the sandbox coverage graph, by headless Chromium', async (context) => {
    const chromium = findExecutable('chromium');
    if (!chromium) {
      context.skip('chromium is not installed (hack/install-prometheus.sh --with-chromium)');
      return;
    }
    const coverage = dashboardQueries.find((q) => q.includes('decision="sandbox"')) ?? '';
    const url = `${prometheus?.url}/graph?g0.expr=${encodeURIComponent(fill(coverage).replaceAll('[1m]', '[10s]'))}&g0.tab=0&g0.range_input=1m`;
    const shot = join(dir, 'sandbox-coverage.png');
    await execFileAsync(
      chromium,
      ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1400,900', '--virtual-time-budget=10000', `--screenshot=${shot}`, url],
      { timeout: 90_000 },
    );
    expect(existsSync(shot)).toBe(true);
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    if (process.env.SANDBOX_WEBHOOK_UPDATE_SCREENSHOT === '1') {
      mkdirSync(join(REPO_ROOT, 'docs/images'), { recursive: true });
      copyFileSync(shot, join(REPO_ROOT, 'docs/images/sandbox-coverage.png'));
    }
  });
});
