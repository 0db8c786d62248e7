#!/usr/bin/env node
// The admission core, offline: check a policy file, or see what the webhook would answer for a pod
// or an AdmissionReview, without a server or a cluster.
//
//   sandbox-webhook validate POLICY.yaml
//   sandbox-webhook evaluate --policy POLICY.yaml [--namespace NS] [--namespace-labels k=v,...]
//                            [--runtime-class NAME[=missing|=no-scheduling]] FILE.json|-

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { admit } from './admission/admit.js';
import type { ClusterFacts } from './admission/facts.js';
import { decodeReview } from './admission/review.js';
import { loadPolicyFile } from './config/policy-file.js';
import type { RuntimeClassFact } from './policy/evaluate.js';

const USAGE = `Usage:
  sandbox-webhook validate POLICY.yaml
      Checks a SandboxPolicy; prints every error with its path. Exit 0 valid, 1 invalid.
  sandbox-webhook evaluate --policy POLICY.yaml [options] FILE.json
      Prints the AdmissionReview response the webhook would send (patch decoded) for FILE,
      a Pod or an AdmissionReview ('-' reads standard input). Exit 0 allowed, 3 denied.
      --namespace NS              namespace of a bare Pod (default: its metadata.namespace or "default")
      --namespace-labels k=v,...  the namespace's labels (default: unknown, decided fail-safe)
      --runtime-class NAME[=missing|=no-scheduling]  what the cluster has (default: unknown)
`;

function labels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    out[eq === -1 ? pair : pair.slice(0, eq)] = eq === -1 ? '' : pair.slice(eq + 1);
  }
  return out;
}

async function validate(file: string | undefined): Promise<number> {
  if (!file) {
    process.stderr.write(USAGE);
    return 2;
  }
  const result = await loadPolicyFile(file);
  for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
  if (!result.ok) {
    for (const error of result.errors) process.stderr.write(`error: ${error}\n`);
    process.stderr.write(`${file}: invalid (${result.errors.length} error${result.errors.length === 1 ? '' : 's'})\n`);
    return 1;
  }
  process.stdout.write(`${file}: valid (${result.policy.rules.length} rules, mode ${result.policy.mode}, default ${result.policy.defaultAction})\n`);
  return 0;
}

async function evaluate(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      policy: { type: 'string' },
      namespace: { type: 'string' },
      'namespace-labels': { type: 'string' },
      'runtime-class': { type: 'string', multiple: true },
    },
  });
  const file = positionals[0];
  if (!values.policy || !file) {
    process.stderr.write(USAGE);
    return 2;
  }
  const loaded = await loadPolicyFile(values.policy);
  if (!loaded.ok) {
    for (const error of loaded.errors) process.stderr.write(`error: ${error}\n`);
    return 1;
  }
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
            namespace:
              values.namespace ?? ((input.metadata as Record<string, unknown> | undefined)?.namespace as string | undefined) ?? 'default',
            operation: 'CREATE',
            object: input,
          },
        };
  const decoded = decodeReview(review);
  if (!decoded.ok) {
    process.stderr.write(`error: ${decoded.message}\n`);
    return 1;
  }
  const classes = new Map<string, RuntimeClassFact>();
  for (const spec of values['runtime-class'] ?? []) {
    const [name = '', state] = spec.split('=');
    classes.set(
      name,
      state === 'missing'
        ? { state: 'missing' }
        : { state: 'present', handler: 'runsc', nodeSelector: state === 'no-scheduling' ? undefined : {} },
    );
  }
  const namespaceLabels = values['namespace-labels'];
  const cluster: ClusterFacts = {
    namespace: (name) =>
      Promise.resolve(
        namespaceLabels === undefined
          ? { name, labels: undefined, unknownReason: 'not given (--namespace-labels)' }
          : { name, labels: labels(namespaceLabels) },
      ),
    runtimeClass: (name) => classes.get(name) ?? { state: 'unknown', reason: 'not given (--runtime-class)' },
  };
  const { response } = await admit(decoded.request, loaded.policy, cluster);
  const shown = response.patch
    ? { ...response, patch: JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as unknown }
    : response;
  process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
  return response.allowed ? 0 : 3;
}

async function cli(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'validate':
      return validate(rest[0]);
    case 'evaluate':
      return evaluate(rest);
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(USAGE);
      return 2;
  }
}

cli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`sandbox-webhook: ${(error as Error).message}\n`);
    process.exitCode = 1;
  },
);
