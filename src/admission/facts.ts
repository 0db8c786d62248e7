// What the admission step needs to know about the cluster. cluster/ implements it with informers;
// offline (no kubeconfig) nothing is known and the policy decides fail-safe.

import type { NamespaceFacts, RuntimeClassFact } from '../policy/evaluate.js';

export interface ClusterFacts {
  /** Never rejects: a failed lookup yields labels `undefined` with the reason. */
  namespace(name: string): Promise<NamespaceFacts>;
  runtimeClass(name: string): RuntimeClassFact;
}

export const offlineFacts: ClusterFacts = {
  namespace: (name) =>
    Promise.resolve({ name, labels: undefined, unknownReason: 'no cluster connection (offline mode)' }),
  runtimeClass: () => ({ state: 'unknown', reason: 'no cluster connection (offline mode)' }),
};
