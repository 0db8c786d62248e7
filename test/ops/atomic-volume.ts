// A directory updated the way the kubelet updates ConfigMap and Secret volumes, for the hot-reload
// tests (unit and process level).

import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A directory updated the way the kubelet's AtomicWriter updates ConfigMap and Secret volumes
 * (kubernetes pkg/volume/util/atomic_writer.go): the files go into a new `..<timestamp>` directory,
 * a `..data_tmp` symlink to it is renamed over `..data` (the one atomic step), each visible name
 * is a symlink `name -> ..data/name`, and the previous timestamped directory is removed.
 */
export class AtomicVolume {
  private current: string | undefined;
  private generation = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** Writes a new version of all files; returns performance.now() right after the atomic swap. */
  write(files: Record<string, string>): number {
    this.generation += 1;
    const stamp = new Date().toISOString().replace(/[-:T]/g, '_').replace('Z', '');
    const next = `..${stamp}.${this.generation}${Math.floor(Math.random() * 1e6)}`;
    mkdirSync(join(this.dir, next));
    for (const [name, content] of Object.entries(files)) writeFileSync(join(this.dir, next, name), content);
    symlinkSync(next, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    const swappedAt = performance.now();
    for (const name of Object.keys(files)) {
      if (!existsSync(join(this.dir, name))) symlinkSync(join('..data', name), join(this.dir, name));
    }
    if (this.current) rmSync(join(this.dir, this.current), { recursive: true, force: true });
    this.current = next;
    return swappedAt;
  }

  /** The entries of the directory, for checking the layout. */
  entries(): string[] {
    return readdirSync(this.dir).sort();
  }
}
