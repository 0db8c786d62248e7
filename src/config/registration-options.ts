// Options of self-registration (src/cluster/registration.ts), from the environment the chart sets:
//   WEBHOOK_CONFIGURATION_FILE  the MutatingWebhookConfiguration to apply; unset = do not register
//   CA_BUNDLE_FILE              PEM of the serving certificate's CA (required with the above)
//   REGISTRATION_INTERVAL_MS    how often to check and apply [2000]
//   REGISTRATION_RESYNC_SECONDS apply again at least this often [60]
//   POD_NAMESPACE               the replica's namespace: when it is being deleted, so is the configuration
// Validated once, every error named, like the other options (options.ts).

import { resolve } from 'node:path';
import type { RegistrationOptions } from '../cluster/registration.js';

export type RegistrationOptionsResult =
  | { ok: true; options: RegistrationOptions | undefined }
  | { ok: false; errors: string[] };

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number, errors: string[]): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || value < min || value > max) {
    errors.push(`${name}: must be an integer from ${min} to ${max}, got "${raw}"`);
    return fallback;
  }
  return value;
}

export function registrationOptions(env: NodeJS.ProcessEnv): RegistrationOptionsResult {
  const file = env.WEBHOOK_CONFIGURATION_FILE;
  if (file === undefined || file === '') return { ok: true, options: undefined };
  const errors: string[] = [];
  const caBundleFile = env.CA_BUNDLE_FILE;
  if (caBundleFile === undefined || caBundleFile === '') errors.push('CA_BUNDLE_FILE: required when WEBHOOK_CONFIGURATION_FILE is set');
  const options: RegistrationOptions = {
    configurationFile: resolve(file),
    caBundleFile: resolve(caBundleFile ?? ''),
    intervalMs: integer('REGISTRATION_INTERVAL_MS', env.REGISTRATION_INTERVAL_MS, 2000, 100, 600_000, errors),
    resyncMs: 1000 * integer('REGISTRATION_RESYNC_SECONDS', env.REGISTRATION_RESYNC_SECONDS, 60, 1, 86_400, errors),
    requestTimeoutMs: 5000,
    ...(env.POD_NAMESPACE ? { namespace: env.POD_NAMESPACE } : {}),
  };
  return errors.length > 0 ? { ok: false, errors } : { ok: true, options: Object.freeze(options) };
}
