// A real Prometheus (the Debian `prometheus` binary, hack/install-prometheus.sh) on loopback, scraping
// what the test names every second, and its HTTP query API.
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { freePort, getUrl } from './controlplane.js';
import { startProcess, type ManagedProcess } from './process.js';
import { setTimeout as sleep } from 'node:timers/promises';

const execFileAsync = promisify(execFile);

/** The path of a binary on PATH or in /usr/bin; undefined when absent. */
export function findExecutable(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/usr/local/bin']) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

export async function promtool(args: readonly string[], cwd: string): Promise<{ code: number; output: string }> {
  const binary = findExecutable('promtool');
  if (!binary) throw new Error('promtool not found: run hack/install-prometheus.sh');
  try {
    const { stdout, stderr } = await execFileAsync(binary, args, { cwd, timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failure.code === 'number' ? failure.code : 1, output: (failure.stdout ?? '') + (failure.stderr ?? '') };
  }
}

export interface ScrapeJob {
  job_name: string;
  [setting: string]: unknown;
}

export interface RunningPrometheus {
  url: string;
  process: ManagedProcess;
  /** An instant query; resolves with the result vector (or scalar as one sample). */
  query(expr: string): Promise<{ metric: Record<string, string>; value: number }[]>;
  /** Targets' health by job. */
  targets(): Promise<{ job: string; health: string; lastError: string }[]>;
  stop(): Promise<void>;
}

export async function startPrometheus(dir: string, jobs: readonly ScrapeJob[]): Promise<RunningPrometheus> {
  const binary = findExecutable('prometheus');
  if (!binary) throw new Error('prometheus not found: run hack/install-prometheus.sh');
  const port = await freePort();
  const config = join(dir, 'prometheus.yml');
  writeFileSync(config, stringify({ global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' }, scrape_configs: jobs }));
  const process = startProcess({
    name: 'prometheus',
    command: binary,
    args: [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--web.enable-lifecycle',
      '--log.level=warn',
    ],
    logFile: join(dir, 'prometheus.log'),
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (!process.running()) throw new Error(`prometheus exited: see ${join(dir, 'prometheus.log')}`);
    const ready = await getUrl(`${url}/-/ready`).catch(() => undefined);
    if (ready?.status === 200) break;
    if (i > 300) throw new Error('prometheus not ready within 30 s');
    await sleep(100);
  }
  const api = async (path: string): Promise<unknown> => {
    const { status, body } = await getUrl(`${url}${path}`);
    const parsed = JSON.parse(body) as { status: string; data: unknown; error?: string };
    if (status !== 200 || parsed.status !== 'success') throw new Error(`${path}: ${parsed.error ?? status}`);
    return parsed.data;
  };
  return {
    url,
    process,
    async query(expr) {
      const data = (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as { resultType: string; result: unknown };
      if (data.resultType === 'scalar') return [{ metric: {}, value: Number((data.result as [number, string])[1]) }];
      return (data.result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    async targets() {
      const data = (await api('/api/v1/targets')) as { activeTargets: { labels: { job: string }; health: string; lastError: string }[] };
      return data.activeTargets.map((t) => ({ job: t.labels.job, health: t.health, lastError: t.lastError }));
    },
    stop: async () => {
      await process.stop('SIGTERM', 5_000);
    },
  };
}
