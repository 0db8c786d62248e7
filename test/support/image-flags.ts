// The Node flags the image runs the webhook with, for the tests and benchmarks that start the built
// server as it is deployed.

import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * What the Dockerfile's CMD passes to node before dist/main.js (the distroless entrypoint is node
 * itself).
 */
export function imageNodeFlags(dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')): string[] {
  const cmd = /^CMD (\[.*\])\s*$/m.exec(dockerfile)?.[1];
  const args: unknown = cmd === undefined ? undefined : JSON.parse(cmd);
  const main = Array.isArray(args) ? args.indexOf('dist/main.js') : -1;
  if (!Array.isArray(args) || main === -1) throw new Error('Dockerfile: no CMD ["...", "dist/main.js"] to take the Node flags from');
  return args.slice(0, main).map(String);
}
