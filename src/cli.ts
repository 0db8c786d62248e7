#!/usr/bin/env node
// The admission core outside the webhook: the same admit() decides manifests offline, pins a
// policy's behaviour in tests, and audits the pods running in a cluster.
//
//   sandbox-webhook validate POLICY.yaml
//   sandbox-webhook evaluate --policy POLICY.yaml -f FILE|DIR|- [...]
//   sandbox-webhook test FILE
//   sandbox-webhook audit --policy POLICY.yaml [--kubeconfig FILE] [--context NAME]

import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { admit } from './admission/admit.js';
import { offlineFacts, type ClusterFacts } from './admission/facts.js';
import { decodeReview } from './admission/review.js';
import { evaluateManifest, FAIL_ON, fails, isEvaluated, layeredFacts, parseNamespaceLabels, readManifests, type Evaluation } from './audit/manifests.js';
import { runPolicyTest } from './audit/policy-test.js';
import { scanPods, type PodAudit } from './audit/scan.js';
import { cliKubeApi, snapshotFacts } from './cluster/pods.js';
import { loadPolicyFile } from './config/policy-file.js';
import type { RuntimeClassFact } from './policy/evaluate.js';
import type { Policy } from './policy/policy.js';

const USAGE = `Usage: sandbox-webhook COMMAND [options]

Commands:
  validate POLICY.yaml       check a SandboxPolicy
  evaluate -f FILE|DIR|-     decide manifests (Pods, workloads, Lists) as the webhook would
  test FILE                  run a policy test file (SandboxPolicyTest)
  audit                      classify the pods running in a cluster

Run 'sandbox-webhook COMMAND --help' for a command's options.
`;

const HELP: Record<string, string> = {
  validate: `Usage: sandbox-webhook validate POLICY.yaml

Checks a SandboxPolicy; prints every error with its path, and the loader's warnings.
Exit 0 valid, 1 invalid, 2 bad usage.
`,
  evaluate: `Usage: sandbox-webhook evaluate --policy POLICY.yaml -f FILE|DIR|- [options]

Decides every Pod and workload (Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, Job, CronJob, PodTemplate) in multi-document YAML or JSON, Lists
included, as the webhook would on CREATE: decision, rule, RuntimeClass, warnings, patch.

Options:
  -f, --filename FILE|DIR|-   manifests; a directory's .yaml/.yml/.json files; '-' stdin (repeatable)
  --policy FILE               the SandboxPolicy (required)
  -n, --namespace NS          namespace of objects that name none [default]
  --namespace-labels NS:k=v,k=v  labels of namespace NS ('NS:' for none); repeatable. Without
                              'NS:' the labels apply to every namespace known from nowhere else.
                              Namespace objects in the input count too. Unknown: decided fail-safe.
  --kubeconfig FILE, --context NAME  read namespaces and RuntimeClasses from this cluster
  --runtime-class NAME[=missing|=no-scheduling]  a RuntimeClass the cluster has (repeatable)
  -o, --output table|json|yaml  [table]
  --fail-on deny|violation|never  exit 1 when an object would be denied (deny, the default; a
                              workload whose pods would be denied counts), also when one would be
                              changed (violation: not sandboxed as written), or never

Exit 0 passed, 1 the --fail-on gate failed, 2 bad usage or input.
Compatible form: 'evaluate --policy POLICY.yaml FILE.json' (one Pod or AdmissionReview, without -f)
prints the AdmissionReview response, patch decoded; exit 0 allowed, 3 denied.
`,
  test: `Usage: sandbox-webhook test FILE

Runs a SandboxPolicyTest: each case is a Pod or workload (inline 'object' or 'file') with what
the policy must do ('expect': result, decision, rule, runtimeClassName, warning). Prints PASS or
FAIL per case, with each difference. Exit 0 all passed, 1 a case failed, 2 the file is invalid.
See docs/audit.md for the format.
`,
  audit: `Usage: sandbox-webhook audit --policy POLICY.yaml [options]

Lists every pod that has not ended, cluster-wide, 500 per request (limit/continue), and
classifies each against the policy: sandboxed (accepted RuntimeClass), allowed (unsandboxed by a
rule), violation (would be sandboxed or denied today).

Options:
  --policy FILE               the SandboxPolicy (required)
  --kubeconfig FILE           as kubectl: else KUBECONFIG, else ~/.kube/config
  --context NAME              a context of the kubeconfig
  -o, --output table|json|yaml  [table]
  --fail-on violation|never   exit 1 when a pod is a violation [never]
  --page-size N               pods per list request [500]
  --stats                     print pods, requests, duration and peak RSS to stderr

Exit 0 done, 1 the --fail-on gate failed, 2 bad usage or the cluster could not be read.
`,
};

class UsageError extends Error {}

function out(text: string): void {
  process.stdout.write(text);
}

function err(text: string): void {
  process.stderr.write(text);
}

function readStdin(): string {
  return readFileSync(0, 'utf8');
}

/** Columns padded as kubectl get prints them. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [header, ...rows].map(line).join('\n') + '\n';
}

function output(value: unknown, format: string): string {
  return format === 'yaml' ? toYaml(value) : `${JSON.stringify(value, null, 2)}\n`;
}

function oneOfFlag<T extends string>(flag: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag}: must be one of ${allowed.join(', ')}, got "${value}"`);
  return value as T;
}

async function policyFrom(file: string | undefined): Promise<Policy> {
  if (!file) throw new UsageError('--policy is required');
  const loaded = await loadPolicyFile(file);
  if (!loaded.ok) throw new UsageError(`invalid policy ${file}:\n${loaded.errors.map((e) => `  ${e}`).join('\n')}`);
  return loaded.policy;
}

async function validate(args: string[]): Promise<number> {
  const file = args[0];
  if (!file) throw new UsageError('validate: give the policy file');
  const result = await loadPolicyFile(file);
  for (const warning of result.warnings) err(`warning: ${warning}\n`);
  if (!result.ok) {
    for (const error of result.errors) err(`error: ${error}\n`);
    err(`${file}: invalid (${result.errors.length} error${result.errors.length === 1 ? '' : 's'})\n`);
    return 1;
  }
  out(`${file}: valid (${result.policy.rules.length} rules, mode ${result.policy.mode}, default ${result.policy.defaultAction}, workloads ${result.policy.workloads})\n`);
  return 0;
}

function runtimeClasses(specs: readonly string[]): Map<string, RuntimeClassFact> {
  const classes = new Map<string, RuntimeClassFact>();
  for (const spec of specs) {
    const [name = '', state] = spec.split('=');
    if (state !== undefined && state !== 'missing' && state !== 'no-scheduling') throw new UsageError(`--runtime-class ${spec}: the state is missing or no-scheduling`);
    classes.set(name, state === 'missing' ? { state: 'missing' } : { state: 'present', handler: 'runsc', nodeSelector: state === 'no-scheduling' ? undefined : {} });
  }
  return classes;
}

const EVALUATE_OPTIONS = {
  filename: { type: 'string', short: 'f', multiple: true },
  policy: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  'namespace-labels': { type: 'string', multiple: true },
  'runtime-class': { type: 'string', multiple: true },
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  output: { type: 'string', short: 'o' },
  'fail-on': { type: 'string' },
} as const;

async function evaluate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: EVALUATE_OPTIONS });
  const files = values.filename ?? [];
  if (files.length === 0 && positionals.length === 1) return legacyEvaluate(positionals[0] as string, values);
  if (files.length === 0) throw new UsageError('evaluate: give -f FILE|DIR|-');
  if (positionals.length > 0) throw new UsageError(`evaluate: unexpected argument ${positionals[0]} (files go after -f)`);
  const format = oneOfFlag('--output', values.output, ['table', 'json', 'yaml'] as const, 'table');
  const failOn = oneOfFlag('--fail-on', values['fail-on'], FAIL_ON, 'deny');
  const policy = await policyFrom(values.policy);
  let manifests;
  let given;
  try {
    manifests = readManifests(files, readStdin);
    given = parseNamespaceLabels(values['namespace-labels'] ?? []);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  let base: ClusterFacts = offlineFacts;
  const classes = runtimeClasses(values['runtime-class'] ?? []);
  if (values.kubeconfig !== undefined || values.context !== undefined) {
    base = await snapshotFacts(await cliKubeApi({ kubeconfig: values.kubeconfig, context: values.context }));
  } else if (classes.size > 0) {
    base = { namespace: offlineFacts.namespace, runtimeClass: (name) => classes.get(name) ?? { state: 'unknown', reason: 'not given (--runtime-class)' } };
  }
  const cluster = layeredFacts(manifests, given, base);
  const evaluations: Evaluation[] = [];
  for (const manifest of manifests) {
    if (isEvaluated(manifest.object)) evaluations.push(await evaluateManifest(manifest, policy, cluster, values.namespace ?? 'default'));
  }
  if (format === 'table') {
    out(
      table(
        ['KIND', 'NAMESPACE', 'NAME', 'DECISION', 'RULE', 'CLASS', 'RESULT', 'WARNINGS'],
        evaluations.map((e) => [e.kind, e.namespace, e.name, e.decision, e.rule, e.runtimeClassName ?? '-', e.result, String(e.warnings.length)]),
      ),
    );
    for (const e of evaluations) {
      for (const warning of e.warnings) err(`Warning: ${e.kind}/${e.name}: ${warning}\n`);
      if (e.message && e.result !== 'warned') err(`${e.result === 'error' ? 'Error' : 'Denied'}: ${e.kind}/${e.name}: ${e.message}\n`);
    }
  } else {
    out(output({ items: evaluations }, format));
  }
  const failed = evaluations.filter((e) => fails(e, failOn));
  if (failed.length > 0) err(`--fail-on ${failOn}: ${failed.length} of ${evaluations.length} object${evaluations.length === 1 ? '' : 's'} failed\n`);
  return failed.length > 0 ? 1 : 0;
}

/** The compatible form: one Pod or AdmissionReview in JSON, the response printed as the webhook sends it. */
async function legacyEvaluate(file: string, values: { policy?: string; namespace?: string; 'namespace-labels'?: string[]; 'runtime-class'?: string[] }): Promise<number> {
  const policy = await policyFrom(values.policy);
  const input = JSON.parse(readFileSync(file === '-' ? 0 : file, 'utf8')) as Record<string, unknown>;
  const review =
    input.kind === 'AdmissionReview'
      ? input
      : {
          apiVersion: 'admission.k8s.io/v1',
          kind: 'AdmissionReview',
          request: {
            uid: 'offline-evaluation',
            kind: { group: '', version: 'v1', kind: 'Pod' },
            resource: { group: '', version: 'v1', resource: 'pods' },
            namespace: values.namespace ?? ((input.metadata as Record<string, unknown> | undefined)?.namespace as string | undefined) ?? 'default',
            operation: 'CREATE',
            object: input,
          },
        };
  const decoded = decodeReview(review);
  if (!decoded.ok) throw new UsageError(decoded.message);
  const classes = runtimeClasses(values['runtime-class'] ?? []);
  const given = parseNamespaceLabels(values['namespace-labels'] ?? []);
  const cluster = layeredFacts([], given, {
    namespace: (name) => ({ name, labels: undefined, unknownReason: 'not given (--namespace-labels)' }),
    runtimeClass: (name) => classes.get(name) ?? { state: 'unknown', reason: 'not given (--runtime-class)' },
  });
  const { response } = await admit(decoded.request, policy, cluster);
  const shown = response.patch ? { ...response, patch: JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as unknown } : response;
  out(`${JSON.stringify(shown, null, 2)}\n`);
  return response.allowed ? 0 : 3;
}

async function test(args: string[]): Promise<number> {
  const file = args[0];
  if (!file || args.length > 1) throw new UsageError('test: give one test file');
  const run = await runPolicyTest(file);
  if (!run.ok) {
    for (const error of run.errors) err(`error: ${error}\n`);
    err(`${file}: invalid test file (${run.errors.length} error${run.errors.length === 1 ? '' : 's'})\n`);
    return 2;
  }
  for (const outcome of run.cases) {
    out(`${outcome.passed ? 'PASS' : 'FAIL'}  ${outcome.name}\n`);
    for (const difference of outcome.differences) out(`        ${difference}\n`);
    if (!outcome.passed && outcome.evaluation.message) out(`        (${outcome.evaluation.message})\n`);
  }
  const failed = run.cases.filter((c) => !c.passed).length;
  out(`${run.cases.length} case${run.cases.length === 1 ? '' : 's'}: ${run.cases.length - failed} passed, ${failed} failed\n`);
  return failed > 0 ? 1 : 0;
}

async function audit(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: false,
    strict: true,
    options: {
      policy: { type: 'string' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
      output: { type: 'string', short: 'o' },
      'fail-on': { type: 'string' },
      'page-size': { type: 'string' },
      stats: { type: 'boolean' },
    },
  });
  void positionals;
  const format = oneOfFlag('--output', values.output, ['table', 'json', 'yaml'] as const, 'table');
  const failOn = oneOfFlag('--fail-on', values['fail-on'], ['violation', 'never'] as const, 'never');
  const pageSize = Number(values['page-size'] ?? '500');
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 10_000) throw new UsageError(`--page-size: an integer from 1 to 10000, got "${values['page-size']}"`);
  const policy = await policyFrom(values.policy);
  const api = await cliKubeApi({ kubeconfig: values.kubeconfig, context: values.context });
  const cluster = await snapshotFacts(api);
  const pods: PodAudit[] = [];
  const stats = await scanPods({ api, policy, cluster, pageSize, onPod: (pod) => pods.push(pod) });
  const counts = { sandboxed: 0, allowed: 0, violation: 0 };
  for (const pod of pods) counts[pod.state] += 1;
  if (format === 'table') {
    if (pods.length === 0) err('No pods found.\n');
    else out(table(['NAMESPACE', 'POD', 'STATE', 'RULE', 'REASON'], pods.map((p) => [p.namespace, p.name, p.state, p.rule, p.reason])));
  } else {
    out(output({ items: pods, summary: { pods: stats.pods, ...counts } }, format));
  }
  if (values.stats) {
    const peakRssMiB = (process.resourceUsage().maxRSS / 1024).toFixed(1);
    err(`audit: ${stats.pods} pods (${counts.sandboxed} sandboxed, ${counts.allowed} allowed, ${counts.violation} violations) in ${stats.durationMs} ms, ${stats.requests} list requests of ${pageSize}, peak RSS ${peakRssMiB} MiB\n`);
  }
  return failOn === 'violation' && counts.violation > 0 ? 1 : 0;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = { validate, evaluate, test, audit };

export async function cli(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    out(USAGE);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (!run) {
    err(`sandbox-webhook: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    out(HELP[command] ?? USAGE);
    return 0;
  }
  try {
    return await run(rest);
  } catch (error) {
    const usage = error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    err(`sandbox-webhook ${command}: ${(error as Error).message}\n`);
    if (usage) err(`Run 'sandbox-webhook ${command} --help' for usage.\n`);
    return 2;
  }
}

/** Whether this module is the program (`node dist/cli.js`, or npx through a bin symlink), not an import. */
function isMain(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  cli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`sandbox-webhook: ${(error as Error).message}\n`);
      process.exitCode = 2;
    },
  );
}
