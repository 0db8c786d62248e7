// The CLI offline: evaluate on manifests (multi-document YAML, Lists, directories, namespace labels
// from the input or the command line), the CI gate, policy test files, --help, and the compatible
// single-pod form of evaluate.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseManifests, parseNamespaceLabels } from '../../src/audit/manifests.js';
import { cli } from '../../src/cli.js';

let dir: string;

const POLICY = `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicy
spec:
  defaultAction: allow
  rules:
    - name: system
      match: { namespaces: [kube-system] }
      action: allow
    - name: tenants
      match: { namespaceSelector: { matchLabels: { sandbox-webhook.io/tenant: "true" } } }
      action: sandbox
`;

const MANIFESTS = `apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  labels: { sandbox-webhook.io/tenant: "true" }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: team-a }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      hostNetwork: true
      containers: [{ name: web, image: nginx:1.27 }]
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: { name: app, namespace: team-a }
    spec: { containers: [{ name: app, image: nginx:1.27 }] }
  - apiVersion: v1
    kind: ConfigMap
    metadata: { name: cfg }
`;

const CLEAN_POD = `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}`;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
  try {
    const code = await cli(argv);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'cli-test-'));
  file('policy.yaml', POLICY);
  file('manifests.yaml', MANIFESTS);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

describe('evaluate -f', () => {
  it('decides every Pod and workload of a multi-document file, Lists included, with the Namespace object\'s labels', async () => {
    const result = await run('evaluate', '--policy', join(dir, 'policy.yaml'), '-f', join(dir, 'manifests.yaml'), '-o', 'json', '--fail-on', 'never');
    expect(result.code).toBe(0);
    const items = (JSON.parse(result.stdout) as { items: Record<string, unknown>[] }).items;
    expect(items.map((e) => [e.source, e.kind, e.namespace, e.name, e.decision, e.rule, e.runtimeClassName, e.result])).toEqual([
      [`${join(dir, 'manifests.yaml')}#2`, 'Deployment', 'team-a', 'web', 'sandbox', 'tenants', undefined, 'warned'],
      [`${join(dir, 'manifests.yaml')}#3.items[0]`, 'Pod', 'team-a', 'app', 'sandbox', 'tenants', 'gvisor', 'patched'],
    ]);
    expect(items[0]?.warnings).toEqual(['sandbox-webhook: spec.template.spec.hostNetwork: its pods would be denied by rule "tenants"']);
    expect(items[0]?.patch).toBeUndefined();
    expect(items[1]?.patch).toEqual([
      { op: 'add', path: '/spec/runtimeClassName', value: 'gvisor' },
      { op: 'add', path: '/metadata/annotations', value: { 'sandbox-webhook.io/rule': 'tenants' } },
    ]);
  });

  it('prints a table like kubectl get, warnings on stderr, and fails the deny gate on a workload whose pods would be denied', async () => {
    const result = await run('evaluate', '--policy', join(dir, 'policy.yaml'), '-f', join(dir, 'manifests.yaml'));
    expect(result.code).toBe(1);
    expect(result.stdout.split('\n')).toEqual([
      'KIND         NAMESPACE   NAME   DECISION   RULE      CLASS    RESULT    WARNINGS',
      'Deployment   team-a      web    sandbox    tenants   -        warned    1',
      'Pod          team-a      app    sandbox    tenants   gvisor   patched   1',
      '',
    ]);
    expect(result.stderr).toContain('Warning: Deployment/web: sandbox-webhook: spec.template.spec.hostNetwork: its pods would be denied by rule "tenants"');
    expect(result.stderr).toContain('--fail-on deny: 1 of 2 objects failed');
  });

  const gates: [string, string[], string, number][] = [
    ['a pod the webhook would patch passes --fail-on deny', ['--namespace-labels', 'default:sandbox-webhook.io/tenant=true'], 'deny', 0],
    ['a pod the webhook would patch fails --fail-on violation', ['--namespace-labels', 'default:sandbox-webhook.io/tenant=true'], 'violation', 1],
    ['labels without a namespace apply to every namespace known from nowhere else', ['--namespace-labels', 'sandbox-webhook.io/tenant=true'], 'violation', 1],
    ['a namespace given without labels is known, and the default allows its pod', ['--namespace-labels', 'default:'], 'violation', 0],
  ];
  for (const [name, flags, failOn, code] of gates) {
    it(name, async () => {
      const pod = file('pod.json', CLEAN_POD);
      const result = await run('evaluate', '--policy', join(dir, 'policy.yaml'), '-f', pod, '--fail-on', failOn, ...flags);
      expect(result.code, result.stderr).toBe(code);
    });
  }

  it('a namespace whose labels are unknown is decided fail-safe (sandboxed)', async () => {
    const result = await run('evaluate', '--policy', join(dir, 'policy.yaml'), '-f', file('pod2.json', CLEAN_POD), '-o', 'json');
    const [item] = (JSON.parse(result.stdout) as { items: Record<string, unknown>[] }).items;
    expect([item?.decision, item?.result]).toEqual(['sandbox', 'patched']);
  });

  it('reads every .yaml, .yml and .json file of a directory', async () => {
    const sub = mkdtempSync(join(dir, 'dir-'));
    writeFileSync(join(sub, 'a.yaml'), CLEAN_POD);
    writeFileSync(join(sub, 'b.json'), CLEAN_POD.replace('solo', 'second'));
    writeFileSync(join(sub, 'notes.txt'), 'not a manifest');
    const result = await run('evaluate', '--policy', join(dir, 'policy.yaml'), '-f', sub, '-o', 'json', '--fail-on', 'never');
    expect((JSON.parse(result.stdout) as { items: { name: string }[] }).items.map((e) => e.name)).toEqual(['solo', 'second']);
  });

  const errors: [string, string[], string][] = [
    ['a YAML syntax error names the document', ['-f', 'BAD'], 'BAD_PATH#1:'],
    ['a bad --output value is named', ['-f', 'manifests.yaml', '-o', 'xml'], '--output: must be one of table, json, yaml, got "xml"'],
    ['a bad --namespace-labels value is named', ['-f', 'manifests.yaml', '--namespace-labels', 'Team:x=y'], '"Team" is not a namespace name'],
    ['a missing file is named', ['-f', 'nothing-here.yaml'], 'nothing-here.yaml'],
  ];
  for (const [name, args, message] of errors) {
    it(`${name} (exit 2)`, async () => {
      const bad = file('bad.yaml', 'kind: [unclosed');
      const resolved = args.map((a) => (a === 'BAD' ? bad : a.endsWith('.yaml') ? join(dir, a) : a));
      const result = await run('evaluate', '--policy', join(dir, 'policy.yaml'), ...resolved);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(message.replace('BAD_PATH', bad));
    });
  }
});

describe('evaluate, the compatible form', () => {
  it('prints the AdmissionReview response for one pod, with the patch decoded; exit 3 when denied', async () => {
    const ok = await run('evaluate', '--policy', join(dir, 'policy.yaml'), '--namespace-labels', 'sandbox-webhook.io/tenant=true', file('one.json', CLEAN_POD));
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ allowed: true, patch: [{ op: 'add', path: '/spec/runtimeClassName', value: 'gvisor' }, { op: 'add' }] });
    const denied = await run('evaluate', '--policy', join(dir, 'policy.yaml'), '--namespace-labels', 'sandbox-webhook.io/tenant=true', file('net.json', CLEAN_POD.replace('"containers"', '"hostNetwork": true, "containers"')));
    expect(denied.code).toBe(3);
    expect(JSON.parse(denied.stdout)).toMatchObject({ allowed: false, status: { code: 403 } });
  });
});

describe('test FILE', () => {
  const testFile = (cases: string): string =>
    file(
      'policy-test.yaml',
      `apiVersion: sandbox-webhook.io/v1alpha1
kind: SandboxPolicyTest
policy: policy.yaml
namespaces:
  team-a: { sandbox-webhook.io/tenant: "true" }
  tools: {}
runtimeClasses: [gvisor]
cases:
${cases}`,
    );

  it('passes when every case does what it expects', async () => {
    file('deploy.yaml', MANIFESTS.split('---\n')[1] ?? '');
    const path = testFile(`  - name: tenant pods are sandboxed
    object: { apiVersion: v1, kind: Pod, metadata: { name: a, namespace: team-a }, spec: { containers: [{ name: a, image: nginx }] } }
    expect: { result: patched, decision: sandbox, rule: tenants, runtimeClassName: gvisor }
  - name: a tenant Deployment with hostNetwork is warned about
    file: deploy.yaml
    expect: { result: warned, warning: "spec.template.spec.hostNetwork" }
`);
    const result = await run('test', path);
    expect(result.stdout).toBe('PASS  tenant pods are sandboxed\nPASS  a tenant Deployment with hostNetwork is warned about\n2 cases: 2 passed, 0 failed\n');
    expect(result.code).toBe(0);
  });

  it('fails with a clear difference when a case does not', async () => {
    const path = testFile(`  - name: tools pods are allowed
    object: { apiVersion: v1, kind: Pod, metadata: { name: t, namespace: tools }, spec: { containers: [{ name: a, image: nginx }] } }
    expect: { decision: allow, rule: tools }
`);
    const result = await run('test', path);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('FAIL  tools pods are allowed\n        rule: expected "tools", got "default"\n1 case: 0 passed, 1 failed\n');
  });

  it('reports every error of an invalid test file with its path (exit 2)', async () => {
    const path = testFile(`  - name: bad
    object: { apiVersion: v1, kind: ConfigMap }
    expect: { decison: allow }
  - object: { apiVersion: v1, kind: Pod, spec: {} }
    file: x.yaml
    expect: {}
`);
    const result = await run('test', path);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('cases[0]: ConfigMap (apiVersion "v1") is not decided by the webhook');
    expect(result.stderr).toContain('cases[0].expect.decison: unknown field');
    expect(result.stderr).toContain('cases[1].name: required');
    expect(result.stderr).toContain('cases[1]: give exactly one of object and file');
  });
});

describe('help and usage', () => {
  for (const command of ['validate', 'evaluate', 'test', 'audit']) {
    it(`${command} --help prints its usage and exits 0`, async () => {
      const result = await run(command, '--help');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^Usage: sandbox-webhook ${command} `));
    });
  }

  it('an unknown command lists the commands (exit 2)', async () => {
    const result = await run('frobnicate');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('unknown command "frobnicate"');
  });

  it('validate says valid, with the workloads setting', async () => {
    const result = await run('validate', join(dir, 'policy.yaml'));
    expect(result.stdout).toBe(`${join(dir, 'policy.yaml')}: valid (2 rules, mode enforce, default allow, workloads warn)\n`);
  });
});

describe('manifest reading', () => {
  it('flattens Lists of Lists and skips empty documents', () => {
    const text = `---\n---\nkind: List\napiVersion: v1\nitems:\n  - { kind: PodList, apiVersion: v1, items: [{ kind: Pod, apiVersion: v1, metadata: { name: a } }] }\n`;
    expect(parseManifests(text, 'x').map((m) => m.source)).toEqual(['x#2.items[0].items[0]']);
  });

  it('namespace labels: NS:k=v per namespace, k=v for the rest, key=value required', () => {
    const parsed = parseNamespaceLabels(['team-a:tier=gold,tenant=true', 'tools:', 'tenant=true']);
    expect(Object.fromEntries(parsed.byNamespace)).toEqual({ 'team-a': { tier: 'gold', tenant: 'true' }, tools: {} });
    expect(parsed.fallback).toEqual({ tenant: 'true' });
    expect(() => parseNamespaceLabels(['team-a:tier'])).toThrow('"tier" is not key=value');
  });
});
