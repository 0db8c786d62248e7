// helm, run as users run it: the binary the harness resolved, its own state directories (never the
// user's), values handed over as files.
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { pinnedVersions, REPO_ROOT, resolveBinary } from './binaries.js';

const execFileAsync = promisify(execFile);

export const CHART = join(REPO_ROOT, 'charts/sandbox-webhook');

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A rendered or stored Kubernetes object, as far as the tests read it. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((doc): doc is Manifest => doc !== null);
}

export class Helm {
  private files = 0;

  /** `home` holds helm's cache, config and data, and the values files. */
  constructor(
    private readonly home: string,
    private readonly kubeconfig?: string,
  ) {
    mkdirSync(home, { recursive: true });
  }

  valuesFile(values: unknown): string {
    this.files += 1;
    const path = join(this.home, `values-${this.files}.json`);
    writeFileSync(path, JSON.stringify(values));
    return path;
  }

  async run(args: readonly string[]): Promise<HelmResult> {
    const helm = resolveBinary('helm');
    if (!helm) throw new Error('helm not found: run hack/build-binaries.sh, or set TEST_ASSET_HELM');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HELM_CACHE_HOME: join(this.home, 'cache'),
      HELM_CONFIG_HOME: join(this.home, 'config'),
      HELM_DATA_HOME: join(this.home, 'data'),
    };
    if (this.kubeconfig) env.KUBECONFIG = this.kubeconfig;
    try {
      const { stdout, stderr } = await execFileAsync(helm.path, args, { env, maxBuffer: 64 * 1024 * 1024 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failure = error as { code?: number; stdout?: string; stderr?: string };
      if (typeof failure.code !== 'number') throw error;
      return { code: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
    }
  }

  /** Runs helm; rejects with its stderr when it exits non-zero; resolves with stdout. */
  async ok(args: readonly string[]): Promise<string> {
    const result = await this.run(args);
    if (result.code !== 0) throw new Error(`helm ${args.slice(0, 2).join(' ')} failed (exit ${result.code}):\n${result.stderr}`);
    return result.stdout;
  }

  /**
   * `helm template` of the chart with `values`, for the Kubernetes version our binaries are pinned to
   * (without a cluster helm assumes an old one, below the chart's kubeVersion); extra arguments (e.g.
   * --api-versions) after.
   */
  async template(release: string, namespace: string, values: unknown, extra: readonly string[] = []): Promise<Manifest[]> {
    const args = ['template', release, CHART, '--namespace', namespace, '--kube-version', pinnedVersions().kubernetes, '-f', this.valuesFile(values), ...extra];
    return parseManifests(await this.ok(args));
  }
}
