import { parsePolicyText } from '../../src/config/policy-file.js';
import type { Policy } from '../../src/policy/policy.js';

/** Compiles a policy from a YAML `spec` body (indented as under `spec:`), failing the test on errors. */
export function policyFromSpec(specYaml: string): Policy {
  const result = parsePolicyText(`apiVersion: sandbox-webhook.io/v1alpha1\nkind: SandboxPolicy\nspec:\n${specYaml}`);
  if (!result.ok) throw new Error(`test policy is invalid:\n${result.errors.join('\n')}`);
  return result.policy;
}
