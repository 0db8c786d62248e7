// Runtime options from flags, then environment, then defaults (docs/design.md "Interfaces users rely on").
// Each option is declared once below (flag, environment variable, default, type and range, help):
// the parser, `--help` and the README's options table (`npm run docs:options`) all come from that
// list, and a unit test fails when the README's table differs from it. Validated once into an
// immutable object; a bad option is an error that names the flag, and all errors come at once.

import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Options {
  readonly port: number;
  readonly host: string;
  /** plain-HTTP port of GET /metrics; 0 = no metrics listener */
  readonly metricsPort: number;
  readonly policyFile: string;
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
  readonly logLevel: LogLevel;
  /** a kubeconfig path; undefined = in-cluster config when running in a pod, else offline */
  readonly kubeconfig: string | undefined;
  readonly offline: boolean;
  /** how long /readyz reports unready before the server stops taking connections on SIGTERM */
  readonly shutdownDelaySeconds: number;
  /** the longest a review may take before the webhook answers fail-closed on its own */
  readonly requestTimeoutMs: number;
  /** TLS handshake and request headers must arrive within this, from the connection's start */
  readonly headersTimeoutMs: number;
  /** a whole request, headers and body, must arrive within this */
  readonly readTimeoutMs: number;
  /** open connections to the webhook port; more are closed at once */
  readonly maxConnections: number;
  /** request bodies buffered at once beyond each one's first 16 KiB, in MiB; larger bodies past it are shed */
  readonly maxBufferedBodyMiB: number;
  /** how often the policy and certificate files are checked for changes (watch events also trigger) */
  readonly reloadIntervalMs: number;
  /** the running-pod audit (docs/audit.md): seconds between scans by the Lease holder; 0 = off */
  readonly auditIntervalSeconds: number;
  /** self-registration (docs/operations.md): the MutatingWebhookConfiguration to apply; undefined = do not register */
  readonly webhookConfigurationFile: string | undefined;
  /** PEM of the serving certificate's CA, put in the registered configuration's caBundle */
  readonly caBundleFile: string | undefined;
  readonly registrationIntervalMs: number;
  readonly registrationResyncSeconds: number;
  /** the replica's namespace: when it is being deleted, the registered configuration is deleted too */
  readonly podNamespace: string | undefined;
}

type Kind =
  | { readonly type: 'integer'; readonly min: number; readonly max: number }
  | { readonly type: 'string' }
  /** a file: given values resolve against the working directory, the default against the package root */
  | { readonly type: 'path' }
  | { readonly type: 'enum'; readonly values: readonly string[] }
  /** a flag without value; its variable is "true" or "false" */
  | { readonly type: 'boolean' };

export interface OptionDeclaration {
  readonly key: keyof Options;
  readonly flag: string;
  readonly env: string;
  readonly kind: Kind;
  /** the default as it would be written; undefined: none */
  readonly default: string | undefined;
  /** how help and README show the default, where the value alone would not say it */
  readonly defaultText?: string;
  /** the value's placeholder in --help */
  readonly placeholder?: string;
  readonly help: string;
}

export const OPTIONS: readonly OptionDeclaration[] = [
  { key: 'port', flag: 'port', env: 'PORT', kind: { type: 'integer', min: 1, max: 65535 }, default: '8443', placeholder: 'N', help: 'HTTPS port: POST /mutate, GET /healthz, GET /readyz' },
  { key: 'host', flag: 'host', env: 'HOST', kind: { type: 'string' }, default: '0.0.0.0', placeholder: 'ADDR', help: 'listen address of both ports' },
  {
    key: 'metricsPort',
    flag: 'metrics-port',
    env: 'METRICS_PORT',
    kind: { type: 'integer', min: 0, max: 65535 },
    default: '8080',
    placeholder: 'N',
    help: 'plain-HTTP port of GET /metrics (Prometheus); 0 turns it off',
  },
  { key: 'policyFile', flag: 'policy', env: 'POLICY_FILE', kind: { type: 'path' }, default: 'policies/default.yaml', placeholder: 'FILE', help: 'the SandboxPolicy; hot-reloaded on change' },
  { key: 'tlsCertFile', flag: 'tls-cert', env: 'TLS_CERT_FILE', kind: { type: 'path' }, default: 'certs/tls.crt', placeholder: 'FILE', help: 'serving certificate, PEM; hot-reloaded on rotation' },
  { key: 'tlsKeyFile', flag: 'tls-key', env: 'TLS_KEY_FILE', kind: { type: 'path' }, default: 'certs/tls.key', placeholder: 'FILE', help: 'serving key, PEM' },
  { key: 'logLevel', flag: 'log-level', env: 'LOG_LEVEL', kind: { type: 'enum', values: LOG_LEVELS }, default: 'info', placeholder: 'LEVEL', help: LOG_LEVELS.join(', ') },
  {
    key: 'kubeconfig',
    flag: 'kubeconfig',
    env: 'KUBECONFIG',
    kind: { type: 'string' },
    default: undefined,
    defaultText: 'in-cluster config in a pod, else offline',
    placeholder: 'FILE',
    help: 'cluster access',
  },
  { key: 'offline', flag: 'offline', env: 'OFFLINE', kind: { type: 'boolean' }, default: 'false', help: 'never contact a cluster, even if a kubeconfig is found' },
  {
    key: 'shutdownDelaySeconds',
    flag: 'shutdown-delay-seconds',
    env: 'SHUTDOWN_DELAY_SECONDS',
    kind: { type: 'integer', min: 0, max: 300 },
    default: '5',
    placeholder: 'N',
    help: 'unready time after SIGTERM before the listener closes',
  },
  {
    key: 'requestTimeoutMs',
    flag: 'request-timeout-ms',
    env: 'REQUEST_TIMEOUT_MS',
    kind: { type: 'integer', min: 100, max: 30000 },
    default: '2500',
    placeholder: 'N',
    help: "deny a review fail-closed when undecided this long after its headers (or sooner, by the apiserver's `?timeout=`)",
  },
  {
    key: 'headersTimeoutMs',
    flag: 'headers-timeout-ms',
    env: 'HEADERS_TIMEOUT_MS',
    kind: { type: 'integer', min: 100, max: 60000 },
    default: '2000',
    placeholder: 'N',
    help: 'close a connection whose TLS handshake and request headers are not done this long after it opened',
  },
  {
    key: 'readTimeoutMs',
    flag: 'read-timeout-ms',
    env: 'READ_TIMEOUT_MS',
    kind: { type: 'integer', min: 100, max: 60000 },
    default: '5000',
    placeholder: 'N',
    help: 'answer 408 and close a request whose headers and body are not all in this long after it began; at least --headers-timeout-ms',
  },
  {
    key: 'maxConnections',
    flag: 'max-connections',
    env: 'MAX_CONNECTIONS',
    kind: { type: 'integer', min: 1, max: 65535 },
    default: '256',
    placeholder: 'N',
    help: 'open connections to the HTTPS port; past it a new one is closed at once (the apiserver applies failurePolicy)',
  },
  {
    key: 'maxBufferedBodyMiB',
    flag: 'max-buffered-body-mib',
    env: 'MAX_BUFFERED_BODY_MIB',
    kind: { type: 'integer', min: 20, max: 4096 },
    default: '32',
    placeholder: 'N',
    help: "MiB of request bodies held at once beyond each one's first 16 KiB; a review past it is denied in-band as overloaded",
  },
  {
    key: 'reloadIntervalMs',
    flag: 'reload-interval-ms',
    env: 'RELOAD_INTERVAL_MS',
    kind: { type: 'integer', min: 100, max: 600000 },
    default: '2000',
    placeholder: 'N',
    help: 'how often the policy and certificate files are polled (directory events also trigger a check)',
  },
  {
    key: 'auditIntervalSeconds',
    flag: 'audit-interval-seconds',
    env: 'AUDIT_INTERVAL_SECONDS',
    kind: { type: 'integer', min: 0, max: 86400 },
    default: '0',
    placeholder: 'N',
    // Off unless asked for: the audit needs list on pods, which the chart grants only then.
    help: 'audit running pods this often, in the replica holding the audit Lease (docs/audit.md); 0 turns it off',
  },
  // Self-registration (src/cluster/registration.ts): the chart sets these as environment variables.
  {
    key: 'webhookConfigurationFile',
    flag: 'webhook-configuration-file',
    env: 'WEBHOOK_CONFIGURATION_FILE',
    kind: { type: 'path' },
    default: undefined,
    defaultText: 'none: do not register',
    placeholder: 'FILE',
    help: 'the MutatingWebhookConfiguration this replica applies once it is ready, and keeps applied (docs/operations.md)',
  },
  {
    key: 'caBundleFile',
    flag: 'ca-bundle-file',
    env: 'CA_BUNDLE_FILE',
    kind: { type: 'path' },
    default: undefined,
    placeholder: 'FILE',
    help: "PEM of the serving certificate's CA, for the registered configuration's caBundle; required with --webhook-configuration-file",
  },
  {
    key: 'registrationIntervalMs',
    flag: 'registration-interval-ms',
    env: 'REGISTRATION_INTERVAL_MS',
    kind: { type: 'integer', min: 100, max: 600000 },
    default: '2000',
    placeholder: 'N',
    help: 'how often a registering replica checks its readiness and the configuration',
  },
  {
    key: 'registrationResyncSeconds',
    flag: 'registration-resync-seconds',
    env: 'REGISTRATION_RESYNC_SECONDS',
    kind: { type: 'integer', min: 1, max: 86400 },
    default: '60',
    placeholder: 'N',
    help: 'a registering replica applies the configuration again at least this often',
  },
  {
    key: 'podNamespace',
    flag: 'pod-namespace',
    env: 'POD_NAMESPACE',
    kind: { type: 'string' },
    default: undefined,
    placeholder: 'NAME',
    help: "the replica's namespace: while it is being deleted, a registering replica deletes the configuration",
  },
];

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

function shownDefault(option: OptionDeclaration): string | undefined {
  if (option.defaultText !== undefined) return option.defaultText;
  if (option.kind.type === 'boolean') return option.default === 'true' ? 'on' : 'off';
  return option.default;
}

function environmentText(option: OptionDeclaration): string {
  return option.kind.type === 'boolean' ? `${option.env}=true` : option.env;
}

/** `--help`. */
export function usage(): string {
  const left = (option: OptionDeclaration): string => `--${option.flag}${option.placeholder ? ` ${option.placeholder}` : ''}`;
  const width = Math.max(...OPTIONS.map((option) => left(option).length));
  const line = (text: string, help: string): string => `  ${text.padEnd(width)} ${help}`;
  const lines = OPTIONS.map((option) => {
    const shown = shownDefault(option);
    return line(left(option), `${option.help} (${environmentText(option)})${shown === undefined ? '' : ` [${shown}]`}`);
  });
  return `Usage: sandbox-webhook [options]

Mutating admission webhook that runs untrusted pods in the gVisor sandbox.

Options (environment variable in parentheses, default in brackets):
${lines.join('\n')}
${line('-h, --help', 'this text')}
${line('--version', 'the version')}
`;
}

/** The README's options table (Markdown), between its `<!-- options:start -->` and `<!-- options:end -->` markers. */
export function optionsTable(): string {
  const rows = OPTIONS.map((option) => {
    const cell = (text: string): string => text.replaceAll('|', '\\|');
    return `| \`--${option.flag}\` (${environmentText(option)}) | ${cell(shownDefault(option) ?? '')} | ${cell(option.help)} |`;
  });
  return ['| flag | default | meaning |', '| --- | --- | --- |', ...rows].join('\n') + '\n';
}

function convert(option: OptionDeclaration, raw: string, from: string, root: string, errors: string[]): unknown {
  const kind = option.kind;
  switch (kind.type) {
    case 'integer': {
      const value = Number(raw);
      if (!/^\d+$/.test(raw.trim()) || value < kind.min || value > kind.max) {
        errors.push(`${from}: must be an integer from ${kind.min} to ${kind.max}, got "${raw}"`);
        return kind.min;
      }
      return value;
    }
    case 'enum':
      if (!kind.values.includes(raw)) errors.push(`${from}: must be one of ${kind.values.join(', ')}, got "${raw}"`);
      return raw;
    case 'boolean':
      if (raw !== 'true' && raw !== 'false') errors.push(`${from}: must be true or false, got "${raw}"`);
      return raw === 'true';
    case 'path':
      return resolve(root, raw);
    case 'string':
      return raw;
  }
}

export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv): OptionsResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        ...Object.fromEntries(OPTIONS.map((option) => [option.flag, { type: option.kind.type === 'boolean' ? 'boolean' : 'string' } as const])),
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    }));
  } catch (error) {
    return { ok: false, errors: [(error as Error).message] };
  }
  if (values.help) return { ok: 'help' };
  if (values.version) return { ok: 'version' };

  const root = packageRoot();
  const errors: string[] = [];
  const options: Record<string, unknown> = {};
  for (const option of OPTIONS) {
    const fromFlag = values[option.flag];
    const fromEnv = env[option.env];
    if (typeof fromFlag === 'boolean') options[option.key] = fromFlag;
    else if (typeof fromFlag === 'string') options[option.key] = convert(option, fromFlag, `--${option.flag}`, process.cwd(), errors);
    else if (fromEnv !== undefined && fromEnv !== '') options[option.key] = convert(option, fromEnv, option.env, process.cwd(), errors);
    else if (option.default !== undefined) options[option.key] = convert(option, option.default, `--${option.flag}`, root, errors);
    else options[option.key] = undefined;
  }
  const parsed = options as unknown as Options;
  if (parsed.readTimeoutMs < parsed.headersTimeoutMs) {
    errors.push(`--read-timeout-ms: must be at least --headers-timeout-ms (${parsed.headersTimeoutMs}), got ${parsed.readTimeoutMs}`);
  }
  if (parsed.webhookConfigurationFile !== undefined && parsed.caBundleFile === undefined) {
    errors.push('--ca-bundle-file (CA_BUNDLE_FILE): required with --webhook-configuration-file (WEBHOOK_CONFIGURATION_FILE)');
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, options: Object.freeze(parsed) };
}
