import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parsePolicyText } from '../../src/config/policy-file.js';

const HEADER = 'apiVersion: sandbox-webhook.io/v1alpha1\nkind: SandboxPolicy\n';

function errorsOf(yaml: string): readonly string[] {
  const result = parsePolicyText(yaml);
  return result.ok ? [] : result.errors;
}

describe('policy loading', () => {
  it('loads the shipped default policy with its documented defaults', () => {
    const result = parsePolicyText(readFileSync(new URL('../../policies/default.yaml', import.meta.url), 'utf8'));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.policy.runtimeClassName).toBe('gvisor');
    expect([...result.policy.acceptedRuntimeClasses]).toEqual(['gvisor']);
    expect(result.policy.mode).toBe('enforce');
    expect(result.policy.defaultAction).toBe('sandbox');
    expect(result.policy.rules.map((r) => r.name)).toEqual(['system', 'sandbox-webhook']);
    expect(result.warnings).toEqual([]);
  });

  it('fills defaults when spec is empty', () => {
    const result = parsePolicyText(`${HEADER}spec: {}\n`);
    expect(result.ok && result.policy).toMatchObject({
      runtimeClassName: 'gvisor',
      mode: 'enforce',
      onConflict: 'deny',
      incompatible: 'deny',
      defaultAction: 'sandbox',
      rules: [],
    });
  });

  it('the docs/design.md example policy loads', () => {
    const result = parsePolicyText(`${HEADER}spec:
  runtimeClassName: gvisor
  acceptedRuntimeClasses: [gvisor]
  mode: enforce
  onConflict: deny
  incompatible: deny
  defaultAction: sandbox
  rules:
    - name: system
      match: { namespaces: ["kube-system", "kube-public", "kube-node-lease"] }
      action: allow
    - name: platform-images
      match: { namespaces: ["platform-*"], allImages: ["registry.example.com/platform/**"] }
      action: allow
    - name: tenants
      match: { namespaceSelector: { matchLabels: { sandbox-webhook.io/tenant: "true" } } }
      action: sandbox
      runtimeClassName: gvisor
`);
    expect(result.ok).toBe(true);
    expect(result.ok && result.policy.usesNamespaceLabels).toBe(true);
  });

  it.each([
    ['an unknown top-level spec field', 'spec:\n  modee: audit\n', ['spec.modee: unknown field']],
    ['a wrong mode', 'spec:\n  mode: permissive\n', ['spec.mode: must be one of enforce, audit, got "permissive"']],
    ['a wrong type for rules', 'spec:\n  rules: {}\n', ['spec.rules: expected a list, got an object']],
    [
      'a bad image glob, by its path',
      'spec:\n  rules:\n    - {name: a, action: allow}\n    - {name: b, action: allow}\n    - name: c\n      action: deny\n      match: {anyImage: ["docker.io/x[y"]}\n',
      ['spec.rules[2].match.anyImage[0]: invalid glob "docker.io/x[y": unclosed "[" or "{"'],
    ],
    ['an unknown match field', 'spec:\n  rules:\n    - name: a\n      action: allow\n      match: {namespace: [x]}\n', ['spec.rules[0].match.namespace: unknown field']],
    ['a missing action', 'spec:\n  rules:\n    - name: a\n', ['spec.rules[0].action: required']],
    ['a duplicate rule name', 'spec:\n  rules:\n    - {name: a, action: allow}\n    - {name: a, action: deny}\n', ['spec.rules[1].name: duplicate rule name "a"']],
    ['a runtimeClassName on an allow rule', 'spec:\n  rules:\n    - {name: a, action: allow, runtimeClassName: kata}\n', ['spec.rules[0].runtimeClassName: only a sandbox rule']],
    ['an invalid RuntimeClass name', 'spec:\n  runtimeClassName: GVisor\n', ['spec.runtimeClassName: "GVisor" is not a valid RuntimeClass name']],
    ['an empty namespaces list', 'spec:\n  rules:\n    - {name: a, action: allow, match: {namespaces: []}}\n', ['spec.rules[0].match.namespaces: must not be empty']],
    [
      'In without values',
      'spec:\n  rules:\n    - name: a\n      action: allow\n      match: {namespaceSelector: {matchExpressions: [{key: k, operator: In}]}}\n',
      ['spec.rules[0].match.namespaceSelector.matchExpressions[0].values: must be non-empty for operator In'],
    ],
    [
      'Exists with values',
      'spec:\n  rules:\n    - name: a\n      action: allow\n      match: {podSelector: {matchExpressions: [{key: k, operator: Exists, values: [x]}]}}\n',
      ['spec.rules[0].match.podSelector.matchExpressions[0].values: must be empty for operator Exists'],
    ],
    [
      'an unknown operator',
      'spec:\n  rules:\n    - name: a\n      action: allow\n      match: {podSelector: {matchExpressions: [{key: k, operator: Has}]}}\n',
      ['spec.rules[0].match.podSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist'],
    ],
    ['an upper-case namespace glob', 'spec:\n  rules:\n    - {name: a, action: allow, match: {namespaces: [Team-A]}}\n', ['spec.rules[0].match.namespaces[0]: invalid glob "Team-A"']],
  ])('rejects %s, naming the path', (_name, body, expected) => {
    const errors = errorsOf(HEADER + body);
    for (const fragment of expected) expect(errors.some((e) => e.startsWith(fragment)), `${fragment} in ${errors.join(' | ')}`).toBe(true);
  });

  it('reports every error at once', () => {
    const errors = errorsOf(`apiVersion: v1\nkind: Policy\nspec:\n  mode: x\n  onConflict: y\n  rules:\n    - {name: A, action: z}\n`);
    expect(errors).toEqual([
      'apiVersion: must be "sandbox-webhook.io/v1alpha1", got "v1"',
      'kind: must be "SandboxPolicy", got "Policy"',
      'spec.mode: must be one of enforce, audit, got "x"',
      'spec.onConflict: must be one of deny, override, got "y"',
      'spec.rules[0].name: "A" must be lower case letters, digits, "-", "_" or ".", at most 63 characters',
      'spec.rules[0].action: must be one of sandbox, allow, deny, got "z"',
    ]);
  });

  it.each([
    ['not YAML at all', 'spec: [unclosed', 'YAML:'],
    ['a duplicate key', `${HEADER}spec: {}\nspec: {}\n`, 'YAML:'],
    ['two documents', `${HEADER}spec: {}\n---\n${HEADER}spec: {}\n`, 'expected one YAML document'],
    ['an empty file', '', 'the file holds no YAML document'],
    ['a list instead of an object', '- a\n- b\n', '(root): expected an object, got a list'],
  ])('rejects %s', (_name, text, fragment) => {
    expect(errorsOf(text).join('\n')).toContain(fragment);
  });

  it('warns that a podSelector on an allow rule is a tenant-controlled escape hatch', () => {
    const result = parsePolicyText(`${HEADER}spec:\n  rules:\n    - {name: opt-out, action: allow, match: {podSelector: {matchLabels: {trusted: "yes"}}}}\n`);
    expect(result.ok).toBe(true);
    expect(result.warnings.join('\n')).toContain('spec.rules[0].match.podSelector: pod labels are written by tenants');
  });

  it('warns about rules after a rule that matches every pod', () => {
    const result = parsePolicyText(`${HEADER}spec:\n  rules:\n    - {name: all, action: sandbox}\n    - {name: late, action: allow, match: {namespaces: [x]}}\n`);
    expect(result.warnings).toContain('spec.rules[1]: unreachable: rule "all" before it matches every pod');
  });

  it('does not take a rule whose match has errors for one that matches every pod', () => {
    const result = parsePolicyText(
      `${HEADER}spec:\n  rules:\n    - {name: broken, action: allow, match: {namespaces: ["team-["]}}\n    - {name: late, action: allow, match: {namespaces: [x]}}\n`,
    );
    expect(result.ok ? [] : result.errors).toContain('spec.rules[0].match.namespaces[0]: invalid glob "team-["');
    expect(result.warnings.join('\n')).not.toContain('unreachable');
  });

  it('returns a frozen policy', () => {
    const result = parsePolicyText(`${HEADER}spec: {rules: [{name: a, action: allow}]}\n`);
    expect(result.ok && Object.isFrozen(result.policy) && Object.isFrozen(result.policy.rules[0])).toBe(true);
  });
});

describe('names and patterns a policy author could get wrong', () => {
  const rule = (name: string, match = '{}', action = 'sandbox'): string => `${HEADER}spec:\n  rules:\n    - name: ${name}\n      match: ${match}\n      action: ${action}\n`;

  it.each([
    ['default', 'spec.rules[0].name: "default" is reserved'],
    ['mirror-pod', 'spec.rules[0].name: "mirror-pod" is reserved'],
  ])('the reserved rule name %s is a load error with its path', (name, error) => {
    expect(errorsOf(rule(name)).join('\n')).toContain(error);
  });

  it.each([
    ['upper case in the repository path', '["registry.example.com/Team/**"]', 'spec.rules[0].match.anyImage[0]: invalid glob "registry.example.com/Team/**": can never match'],
    ['a Docker Hub alias in a registry glob', '["{index.docker.io,quay.io}/**"]', 'registry "index.docker.io" is written "docker.io"'],
    ['the default HTTPS port in a registry glob', '["*.example.com:443/**"]', 'the default HTTPS port ":443" never appears'],
  ])('a pattern that can never match a normalised reference is a load error: %s', (_name, patterns, error) => {
    expect(errorsOf(rule('r', `{ anyImage: ${patterns} }`, 'deny')).join('\n')).toContain(error);
  });

  it('a character class naming upper case still loads, since it can match lower case', () => {
    expect(errorsOf(rule('r', '{ anyImage: ["registry.example.com/[a-zA-Z]*"] }', 'deny'))).toEqual([]);
  });

  it('a deny rule that relies on a tag alone gets a warning saying the same image by digest passes', () => {
    const result = parsePolicyText(rule('r', '{ anyImage: ["evil.example.com/x:1.0", "evil.example.com/y", "evil.example.com/z:1@sha256:*"] }', 'deny'));
    expect(result.warnings).toEqual([
      'spec.rules[0].match.anyImage[0]: "evil.example.com/x:1.0" denies by tag only: tags are mutable and the same image by digest does not match; name the repository without a tag to deny all of it',
    ]);
  });

  it('an allow rule with a tag gets no such warning (a tag there narrows what is allowed)', () => {
    expect(parsePolicyText(rule('r', '{ allImages: ["registry.example.com/x:1.0"] }', 'allow')).warnings).toEqual([]);
  });
});
