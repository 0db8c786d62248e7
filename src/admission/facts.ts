// What the admission step needs to know about the cluster. cluster/ implements it with informers;
// offline (no kubeconfig) nothing is known and the policy decides fail-safe.

import type { NamespaceFacts, RuntimeClassFact } from '../policy/evaluate.js';

export interface ClusterFacts {
  /**
   * At once when known (from a cache), else a promise. Never throws or rejects: a failed lookup
   * yields labels `undefined` with the reason.
   */
  namespace(name: string): NamespaceFacts | Promise<NamespaceFacts>;
  runtimeClass(name: string): RuntimeClassFact;
}

export const offlineFacts: ClusterFacts = {
  namespace: (name) => ({ name, labels: undefined, unknownReason: 'no cluster connection (offline mode)' }),
  runtimeClass: () => ({ state: 'unknown', reason: 'no cluster connection (offline mode)' }),
};
