// Runs the built webhook (dist/main.js) as a real process, with the CLI users rely on
// (docs/design.md) and development certificates from certs/generate.sh.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './binaries.js';
import { freePort, getUrl } from './controlplane.js';
import { makeTempDir, removeTempDir, startProcess } from './process.js';
import { setTimeout as sleep } from 'node:timers/promises';

const execFileAsync = promisify(execFile);

export const WEBHOOK_MAIN = join(REPO_ROOT, 'dist/main.js');

export interface StartWebhookOptions {
  /** The policy as YAML text (written to a temp file), or... */
  policyYaml?: string;
  /** ...a policy file path. Exactly one of the two. */
  policyFile?: string;
  /**
   * Kubeconfig the webhook reads the cluster with. Default: KUBECONFIG of this process (the e2e control
   * plane). null: none, the webhook runs offline.
   */
  kubeconfig?: string | null;
  /** Default: a free loopback port. */
  port?: number;
  /** Extra environment (wins over ours). */
  env?: NodeJS.ProcessEnv;
  /** Extra CLI arguments, after ours. */
  args?: readonly string[];
  /** Default "info". */
  logLevel?: string;
  /** Reuse certificates from a directory holding ca.crt, tls.crt, tls.key instead of generating them. */
  certDir?: string;
  /** How long to wait for /readyz. Default 30 s. */
  readyTimeoutMs?: number;
  /** Another build's dist/main.js (the benchmarks compare builds). Default: this checkout's. */
  main?: string;
  /** false for a build without --metrics-port, which serves /metrics on its HTTPS port. Default true. */
  metricsPort?: boolean;
}

export interface RunningWebhook {
  /** https://127.0.0.1:<port> (append /mutate for the MutatingWebhookConfiguration). */
  url: string;
  port: number;
  /** http://127.0.0.1:<metrics port>/metrics */
  metricsUrl: string;
  pid: number;
  /** Base64 of ca.crt: the caBundle for the MutatingWebhookConfiguration. */
  caBundle: string;
  /** PEM of the CA, for clients of our own. */
  caPem: string;
  certDir: string;
  policyFile: string;
  /** Everything the process wrote to stdout and stderr so far. */
  logs(): string;
  /** Resolves with the exit code or signal name once the process has exited. */
  exited: Promise<number | string>;
  running(): boolean;
  /** Sends `signal` (default SIGTERM), SIGKILL after `graceMs` (default 10 s); resolves with the exit code or signal. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}


/** Runs `sh certs/generate.sh --out dir` (ca.crt, tls.crt, tls.key for localhost and 127.0.0.1). */
export async function generateWebhookCerts(dir: string): Promise<void> {
  await execFileAsync('sh', [join(REPO_ROOT, 'certs/generate.sh'), '--out', dir], { cwd: REPO_ROOT });
}

export async function startWebhook(options: StartWebhookOptions): Promise<RunningWebhook> {
  if ((options.policyYaml === undefined) === (options.policyFile === undefined)) {
    throw new Error('startWebhook: give exactly one of policyYaml and policyFile');
  }
  const main = options.main ?? WEBHOOK_MAIN;
  if (!existsSync(main)) throw new Error(`${main} does not exist: run npm run build first`);
  const dir = makeTempDir('webhook');
  let cleanupDir = true;
  try {
    const certDir = options.certDir ?? join(dir, 'certs');
    if (!options.certDir) await generateWebhookCerts(certDir);
    const policyFile = options.policyFile ?? join(dir, 'policy.yaml');
    if (options.policyYaml !== undefined) writeFileSync(policyFile, options.policyYaml);
    const port = options.port ?? (await freePort());
    const metricsPort = await freePort();
    const logFile = join(dir, 'webhook.log');
    const kubeconfig = options.kubeconfig === undefined ? process.env.KUBECONFIG : options.kubeconfig;
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.KUBECONFIG;
    if (kubeconfig) env.KUBECONFIG = kubeconfig;
    Object.assign(env, options.env);
    const caPem = readFileSync(join(certDir, 'ca.crt'), 'utf8');

    const child = startProcess({
      name: 'sandbox-webhook',
      command: process.execPath,
      args: [
        main,
        '--port', String(port),
        ...(options.metricsPort === false ? [] : ['--metrics-port', String(metricsPort)]),
        '--policy', policyFile,
        '--tls-cert', join(certDir, 'tls.crt'),
        '--tls-key', join(certDir, 'tls.key'),
        '--log-level', options.logLevel ?? 'info',
        ...(options.args ?? []),
      ],
      logFile,
      env,
      cwd: REPO_ROOT,
    });
    let finalLogs: string | undefined;
    const logs = (): string => {
      if (finalLogs !== undefined) return finalLogs;
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    };
    const url = `https://127.0.0.1:${port}`;

    const timeoutMs = options.readyTimeoutMs ?? 30_000;
    const started = Date.now();
    let lastError = '';
    for (;;) {
      if (!child.running()) {
        throw new Error(`sandbox-webhook exited (${String(await child.exited)}) before /readyz answered 200:\n${logs()}`);
      }
      try {
        const { status, body } = await getUrl(`${url}/readyz`, { ca: Buffer.from(caPem) }, 2_000);
        if (status === 200) break;
        lastError = `${status} ${body}`;
      } catch (error) {
        lastError = String(error);
      }
      if (Date.now() - started > timeoutMs) {
        await child.stop('SIGKILL');
        throw new Error(`sandbox-webhook: /readyz not 200 within ${timeoutMs} ms (${lastError}):\n${logs()}`);
      }
      await sleep(100);
    }

    cleanupDir = false;
    // The temp dir (certs, policy, log) goes once the process has exited; the log stays readable.
    void child.exited.then(() => {
      finalLogs = logs();
      removeTempDir(dir);
    });
    return {
      url,
      port,
      metricsUrl: options.metricsPort === false ? `https://127.0.0.1:${port}/metrics` : `http://127.0.0.1:${metricsPort}/metrics`,
      pid: child.pid,
      caBundle: Buffer.from(caPem).toString('base64'),
      caPem,
      certDir,
      policyFile,
      logs: () => logs(),
      exited: child.exited,
      running: () => child.running(),
      stop: (signal?: NodeJS.Signals, graceMs?: number) => child.stop(signal, graceMs),
    };
  } finally {
    if (cleanupDir) removeTempDir(dir);
  }
}
