// The chart's hook jobs, run with node by the webhook's own image (no other image to mirror or trust):
//
//   node hooks.mjs cleanup <configuration>       pre-delete: delete the MutatingWebhookConfiguration
//   node hooks.mjs test <namespace> <class|"">   helm test: server-side dry run of a pod in <namespace>;
//                                                its runtimeClassName must be <class> ("" = none)
//
// In a pod the API is reached the way client libraries do in-cluster: KUBERNETES_SERVICE_HOST/PORT,
// the ServiceAccount token and CA. KUBE_API_URL, KUBE_TOKEN_FILE and KUBE_CA_FILE override them (the
// chart's end-to-end test runs this file outside a pod with them). Every request has a deadline.
import { readFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import { request } from 'node:https';
import { URL } from 'node:url';

const SA = '/var/run/secrets/kubernetes.io/serviceaccount';
const env = process.env;
const host = env.KUBERNETES_SERVICE_HOST ?? '';
const server = env.KUBE_API_URL ?? `https://${host.includes(':') ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT ?? '443'}`;
const TIMEOUT_MS = 10_000;

function call(method, path, body) {
  const token = readFileSync(env.KUBE_TOKEN_FILE ?? `${SA}/token`, 'utf8').trim();
  const ca = readFileSync(env.KUBE_CA_FILE ?? `${SA}/ca.crt`);
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, server), {
      method,
      ca,
      timeout: TIMEOUT_MS,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', 'content-type': 'application/json' },
    }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = { message: text.slice(0, 200) };
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, warnings: [res.headers.warning ?? []].flat() });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function cleanup(name) {
  const { status, body } = await call('DELETE', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${encodeURIComponent(name)}`);
  if (status === 404) return `MutatingWebhookConfiguration ${name}: already gone`;
  if (status !== 200 && status !== 202) throw new Error(`deleting MutatingWebhookConfiguration ${name}: HTTP ${status}: ${body.message ?? ''}`);
  return `MutatingWebhookConfiguration ${name}: deleted`;
}

async function test(namespace, expected) {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'sandbox-check-' },
    spec: { containers: [{ name: 'check', image: 'registry.k8s.io/pause:3.10' }] },
  };
  const { status, body, warnings } = await call('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?dryRun=All`, pod);
  for (const warning of warnings) console.log(`warning: ${warning}`);
  if (status !== 201 && status !== 200) throw new Error(`dry-run pod create in ${namespace}: HTTP ${status}: ${body.message ?? ''}`);
  const got = body.spec?.runtimeClassName ?? '';
  const rule = body.metadata?.annotations?.['sandbox-webhook.io/rule'];
  if (got !== expected) {
    throw new Error(`a new pod in ${namespace} got runtimeClassName ${JSON.stringify(got)}, expected ${JSON.stringify(expected)} (rule: ${rule ?? 'none'})`);
  }
  return `a new pod in ${namespace} gets runtimeClassName ${JSON.stringify(got)} (rule: ${rule ?? 'none'})`;
}

const [command, ...args] = process.argv.slice(2);
const run = command === 'cleanup' && args.length === 1 ? cleanup(args[0])
  : command === 'test' && args.length === 2 ? test(args[0], args[1])
  : Promise.reject(new Error('usage: hooks.mjs cleanup <configuration> | test <namespace> <class>'));
run.then(
  (message) => console.log(message),
  (error) => {
    console.error(`sandbox-webhook hook: ${error.message}`);
    process.exitCode = 1;
  },
);
