// Readiness as /readyz reports it: cluster/ says whether its caches are filled, main.ts adds
// shutdown, server/ serves the answer.

export interface Readiness {
  readonly ready: boolean;
  /** why not ready, one sentence each; empty when ready */
  readonly reasons: readonly string[];
}
