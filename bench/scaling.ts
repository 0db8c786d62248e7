// Policy scaling, in process: the CPU cost of one review against policies of 1 to 10,000 rules, and of
// one deny rule with 1 to 10,000 image patterns. Two paths are timed per review:
//   engine  readPod + decide + judge, the pure policy engine (src/policy)
//   admit   admit() on a decoded review: the engine plus envelope routing, response and JSON Patch
// The body is parsed once outside the loop: JSON parsing is part of the HTTP path, timed by the load runs.

import { performance } from 'node:perf_hooks';
import { admit } from '../src/admission/admit.js';
import { offlineFacts } from '../src/admission/facts.js';
import { decodeReview, type AdmissionRequest } from '../src/admission/review.js';
import { decide, judge, type NamespaceFacts } from '../src/policy/evaluate.js';
import { readPod } from '../src/policy/pod.js';
import { compilePolicy, type Policy } from '../src/policy/policy.js';
import type { Fixture, FixtureName } from './fixtures.js';

export const SCALES = [1, 100, 1_000, 10_000] as const;

export type Series = 'rules' | 'patterns';

export interface ScalingPoint {
  readonly series: Series;
  readonly size: number;
  readonly rules: number;
  readonly imagePatterns: number;
  readonly compileMs: number;
  /** microseconds per review, by fixture */
  readonly engineUs: Readonly<Record<FixtureName, number>>;
  readonly admitUs: Readonly<Record<FixtureName, number>>;
  /** mean over the small-pod mix (tenant, system, denied) */
  readonly engineSmallMixUs: number;
  readonly admitSmallMixUs: number;
}

type Json = Record<string, unknown>;

const pad = (i: number): string => String(i).padStart(4, '0');

/**
 * `size` rules the way a hosting provider grows a policy: the system exception, a blocked-registry
 * deny rule, then one rule per tenant namespace and one per registry path of a team, half each. The
 * fixtures' tenant (tenant-0042, registry.example.com/team-0042/) is listed last, so that a policy
 * scanned rule by rule would pay for all the others first.
 */
export function rulesPolicy(size: number): Json {
  const rules: Json[] = [{ name: 'system', match: { namespaces: ['kube-system', 'kube-public', 'kube-node-lease'] }, action: 'allow' }];
  if (size > 1) rules.push({ name: 'blocked-registries', match: { anyImage: ['evil.example.net/**'] }, action: 'deny' });
  const perKind = Math.max(0, size - rules.length) / 2;
  const namespaceRules = Math.ceil(perKind);
  const imageRules = Math.floor(perKind);
  for (let i = namespaceRules - 1; i >= 0; i--) {
    rules.push({
      name: `tenant-${pad(i)}`,
      match: { namespaces: [`tenant-${pad(i)}`] },
      action: 'sandbox',
      ...(i % 10 === 9 ? { runtimeClassName: 'kata' } : {}),
    });
  }
  for (let i = imageRules - 1; i >= 0; i--) {
    rules.push({ name: `team-${pad(i)}-images`, match: { anyImage: [`registry.example.com/team-${pad(i)}/**`] }, action: 'sandbox' });
  }
  return document(rules);
}

/**
 * One deny rule with `size` image patterns (a blocked-registry list: whole registries, repository
 * paths, tag globs), the blocked registry of the `denied` fixture last, then a tenant catch-all.
 */
export function patternsPolicy(size: number): Json {
  const patterns: string[] = [];
  for (let i = 0; i < size - 1; i++) {
    if (i % 3 === 0) patterns.push(`mirror-${pad(i)}.example.org/**`);
    else if (i % 3 === 1) patterns.push(`registry.example.com/quarantine/team-${pad(i)}/**`);
    else patterns.push(`docker.io/untrusted-${pad(i)}/*:latest`);
  }
  patterns.push('evil.example.net/**');
  return document([
    { name: 'system', match: { namespaces: ['kube-system', 'kube-public', 'kube-node-lease'] }, action: 'allow' },
    { name: 'blocked-registries', match: { anyImage: patterns }, action: 'deny' },
    { name: 'tenants', match: { namespaces: ['tenant-*'] }, action: 'sandbox' },
  ]);
}

function document(rules: Json[]): Json {
  return {
    apiVersion: 'sandbox-webhook.io/v1alpha1',
    kind: 'SandboxPolicy',
    spec: { runtimeClassName: 'gvisor', acceptedRuntimeClasses: ['gvisor', 'kata'], defaultAction: 'sandbox', rules },
  };
}

function compile(doc: Json): { policy: Policy; compileMs: number } {
  const started = performance.now();
  const result = compilePolicy(doc);
  const compileMs = performance.now() - started;
  if (!result.ok) throw new Error(`bench policy does not compile: ${result.errors.slice(0, 3).join('; ')}`);
  return { policy: result.policy, compileMs };
}

// Costs are CPU time (process.cpuUsage), not wall time: on a shared machine other processes take
// turns on the cores, which inflates wall time but not the CPU a call consumes. Each figure is the
// best of five short runs: a run that a GC or a neighbour's burst hit says nothing about the code.

/** CPU microseconds per call of `fn`: warmed up (the JIT optimises it), then timed over about `budgetMs`. */
function timeUs(fn: () => unknown, budgetMs: number): number {
  const run = (ms: number): number => {
    let calls = 0;
    const cpu = process.cpuUsage();
    const started = performance.now();
    while (performance.now() - started < ms) {
      for (let i = 0; i < 20; i++) fn();
      calls += 20;
    }
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / calls;
  };
  run(budgetMs / 2);
  return Math.min(...Array.from({ length: 5 }, () => run(budgetMs / 5)));
}

/** Runs the engine once the way the timed loop does, to prove that the policy decides as the fixture expects. */
function engine(policy: Policy, object: unknown, namespace: NamespaceFacts): { allowed: boolean; patched: boolean } {
  const parsed = readPod(object);
  if (!parsed.ok) throw new Error(parsed.error);
  const verdict = judge(policy, decide(policy, namespace, parsed.pod), parsed.pod, offlineFacts.runtimeClass);
  return { allowed: verdict.allowed, patched: verdict.setRuntimeClassName !== undefined };
}

const SMALL_MIX: readonly FixtureName[] = ['tenant', 'system', 'denied'];

export function runScaling(fixtures: readonly Fixture[], budgetMs: number): ScalingPoint[] {
  const inputs = fixtures.map((fixture) => {
    const decoded = decodeReview(JSON.parse(fixture.body));
    if (!decoded.ok) throw new Error(`fixture ${fixture.name}: ${decoded.message}`);
    const request: AdmissionRequest = decoded.request;
    const namespace: NamespaceFacts = { name: fixture.namespace, labels: undefined, unknownReason: 'bench' };
    return { fixture, request, namespace };
  });
  const points: ScalingPoint[] = [];
  for (const series of ['rules', 'patterns'] as const) {
    for (const size of SCALES) {
      const { policy, compileMs } = compile(series === 'rules' ? rulesPolicy(size) : patternsPolicy(size));
      const engineUs = {} as Record<FixtureName, number>;
      const admitUs = {} as Record<FixtureName, number>;
      for (const { fixture, request, namespace } of inputs) {
        const got = engine(policy, request.object, namespace);
        // A one-rule policy has only the system exception: the blocked image is then sandboxed, not denied.
        const expect = series === 'rules' && size === 1 && fixture.name === 'denied' ? { allowed: true, patched: true } : fixture.expect;
        if (got.allowed !== expect.allowed || got.patched !== expect.patched) {
          throw new Error(`${series} ${size}: fixture ${fixture.name} decided ${JSON.stringify(got)}, expected ${JSON.stringify(expect)}`);
        }
        engineUs[fixture.name] = timeUs(() => engine(policy, request.object, namespace), budgetMs);
        // Offline, every fact is at hand: admit() answers in the call, as for a cached namespace.
        if (admit(request, policy, offlineFacts) instanceof Promise) throw new Error('admit() waited on the cluster offline');
        admitUs[fixture.name] = timeUs(() => admit(request, policy, offlineFacts), budgetMs);
      }
      const mean = (values: Record<FixtureName, number>): number => SMALL_MIX.reduce((sum, name) => sum + values[name], 0) / SMALL_MIX.length;
      points.push({
        series,
        size,
        rules: policy.rules.length,
        imagePatterns: policy.rules.reduce((n, rule) => n + (rule.match.anyImage?.length ?? 0) + (rule.match.allImages?.length ?? 0), 0),
        compileMs,
        engineUs,
        admitUs,
        engineSmallMixUs: mean(engineUs),
        admitSmallMixUs: mean(admitUs),
      });
    }
  }
  return points;
}
