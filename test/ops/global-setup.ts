// The operations tests run the built webhook: refuse to measure a build older than the sources.

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, WEBHOOK_MAIN } from './harness.js';

function newestSourceMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMs(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  if (process.env.OPS_WEBHOOK_MAIN) return;
  let builtMs: number;
  try {
    builtMs = statSync(WEBHOOK_MAIN).mtimeMs;
  } catch {
    throw new Error(`${WEBHOOK_MAIN} is missing: run npm run build first (npm run test:ops does)`);
  }
  if (newestSourceMs(join(REPO_ROOT, 'src')) > builtMs) {
    throw new Error(`${WEBHOOK_MAIN} is older than src/: run npm run build first (npm run test:ops does)`);
  }
}
