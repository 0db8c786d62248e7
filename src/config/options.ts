// Runtime options from flags, then environment, then defaults (DESIGN.md "Interfaces users rely on").
// Validated once into an immutable object; a bad option is an error that names the flag.

import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Options {
  readonly port: number;
  readonly host: string;
  readonly policyFile: string;
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
  readonly logLevel: LogLevel;
  /** a kubeconfig path; undefined = in-cluster config when running in a pod, else offline */
  readonly kubeconfig: string | undefined;
  readonly offline: boolean;
  /** how long /readyz reports unready before the server stops taking connections on SIGTERM */
  readonly shutdownDelayMs: number;
  /** how often the policy and certificate files are checked for changes (watch events also trigger) */
  readonly reloadIntervalMs: number;
  /** the longest a review may take before the webhook answers fail-closed on its own */
  readonly requestTimeoutMs: number;
  /** the running-pod audit (docs/audit.md): seconds between scans by the Lease holder; 0 = off */
  readonly auditIntervalSeconds: number;
}

export type OptionsResult =
  | { ok: true; options: Options }
  | { ok: false; errors: string[] }
  | { ok: 'help' }
  | { ok: 'version' };

/** The package root, so that defaults work whatever the working directory (dist/ or src/ sit below it). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(resolve(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export const USAGE = `Usage: sandbox-webhook [options]

Mutating admission webhook that runs untrusted pods in the gVisor sandbox.

Options (environment variable in brackets):
  --port N                HTTPS port (PORT) [8443]
  --host ADDR             address to listen on (HOST) [0.0.0.0]
  --policy FILE           SandboxPolicy YAML (POLICY_FILE) [policies/default.yaml]
  --tls-cert FILE         serving certificate, PEM (TLS_CERT_FILE) [certs/tls.crt]
  --tls-key FILE          serving key, PEM (TLS_KEY_FILE) [certs/tls.key]
  --log-level LEVEL       ${LOG_LEVELS.join('|')} (LOG_LEVEL) [info]
  --kubeconfig FILE       cluster access (KUBECONFIG); in a pod the in-cluster config is used
  --offline               do not contact a cluster even if a kubeconfig is found (OFFLINE=true)
  --shutdown-delay-seconds N  stay up unready this long after SIGTERM (SHUTDOWN_DELAY_SECONDS) [5]
  --request-timeout-ms N  answer fail-closed after this long (REQUEST_TIMEOUT_MS) [2500]
  --reload-interval-ms N  poll the policy and certificate files this often (RELOAD_INTERVAL_MS) [2000]
  --audit-interval-seconds N  audit running pods this often, in the replica holding the audit
                          Lease; 0 = off (AUDIT_INTERVAL_SECONDS) [0]
  -h, --help              this text
  --version               the version
`;

function integer(name: string, raw: string, min: number, max: number, errors: string[]): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || value < min || value > max) {
    errors.push(`${name}: must be an integer from ${min} to ${max}, got "${raw}"`);
    return min;
  }
  return value;
}

export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): OptionsResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        policy: { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'log-level': { type: 'string' },
        kubeconfig: { type: 'string' },
        offline: { type: 'boolean' },
        'shutdown-delay-seconds': { type: 'string' },
        'request-timeout-ms': { type: 'string' },
        'reload-interval-ms': { type: 'string' },
        // The running-pod audit (src/audit/); off unless asked for, since it needs list on pods.
        'audit-interval-seconds': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    }));
  } catch (error) {
    return { ok: false, errors: [(error as Error).message] };
  }
  if (values.help) return { ok: 'help' };
  if (values.version) return { ok: 'version' };

  const pick = (flag: string, variable: string): string | undefined => {
    const fromFlag = values[flag];
    if (typeof fromFlag === 'string') return fromFlag;
    const fromEnv = env[variable];
    return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
  };
  const root = packageRoot();
  const errors: string[] = [];
  const logLevel = pick('log-level', 'LOG_LEVEL') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    errors.push(`--log-level: must be one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  }
  const options: Options = {
    port: integer('--port', pick('port', 'PORT') ?? '8443', 1, 65535, errors),
    host: pick('host', 'HOST') ?? '0.0.0.0',
    policyFile: resolve(pick('policy', 'POLICY_FILE') ?? resolve(root, 'policies/default.yaml')),
    tlsCertFile: resolve(pick('tls-cert', 'TLS_CERT_FILE') ?? resolve(root, 'certs/tls.crt')),
    tlsKeyFile: resolve(pick('tls-key', 'TLS_KEY_FILE') ?? resolve(root, 'certs/tls.key')),
    logLevel: logLevel as LogLevel,
    kubeconfig: pick('kubeconfig', 'KUBECONFIG'),
    offline: values.offline === true || env.OFFLINE === 'true',
    shutdownDelayMs: 1000 * integer('--shutdown-delay-seconds', pick('shutdown-delay-seconds', 'SHUTDOWN_DELAY_SECONDS') ?? '5', 0, 300, errors),
    requestTimeoutMs: integer('--request-timeout-ms', pick('request-timeout-ms', 'REQUEST_TIMEOUT_MS') ?? '2500', 100, 30000, errors),
    reloadIntervalMs: integer('--reload-interval-ms', pick('reload-interval-ms', 'RELOAD_INTERVAL_MS') ?? '2000', 100, 600000, errors),
    auditIntervalSeconds: integer('--audit-interval-seconds', pick('audit-interval-seconds', 'AUDIT_INTERVAL_SECONDS') ?? '0', 0, 86400, errors),
  };
  return errors.length > 0 ? { ok: false, errors } : { ok: true, options: Object.freeze(options) };
}
