// Self-registration's settings (src/cluster/registration.ts), taken from the runtime options, where
// each is declared and validated with the others (options.ts; the chart sets them as environment
// variables).

import type { RegistrationOptions } from '../cluster/registration.js';
import type { Options } from './options.js';

/** How the replica registers the webhook, or undefined when it does not. */
export function registrationOptions(options: Options): RegistrationOptions | undefined {
  if (options.webhookConfigurationFile === undefined || options.caBundleFile === undefined) return undefined;
  return Object.freeze({
    configurationFile: options.webhookConfigurationFile,
    caBundleFile: options.caBundleFile,
    intervalMs: options.registrationIntervalMs,
    resyncMs: 1000 * options.registrationResyncSeconds,
    requestTimeoutMs: 5000,
    ...(options.podNamespace ? { namespace: options.podNamespace } : {}),
  });
}
