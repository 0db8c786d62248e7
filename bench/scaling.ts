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
import type { Fixture, FixtureName } from '../test/support/bench-reviews.js';
import type { Json } from '../test/support/review.js';
import { patternsPolicy, rulesPolicy } from '../test/support/scale-policies.js';

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
        // Offline, every fact is at hand: admit() does its work within the call (an async admit()
        // returns a settled promise), as for a cached namespace.
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
