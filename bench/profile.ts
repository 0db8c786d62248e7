// `npx tsx bench/profile.ts FILE.cpuprofile [--top N]`: where a V8 CPU profile (node --cpu-prof, as
// `npm run bench -- --profile` and `npm run bench:cluster -- --profile` write them) spent its time,
// by self time: grouped by what the code is (JSON, TLS, HTTP, fastify, logging, metrics, policy,
// admission, informer, GC, ...), then the top functions.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

/** The first group whose test matches, in this order: the more specific first. */
const GROUPS: ReadonlyArray<readonly [string, (frame: CallFrame) => boolean]> = [
  ['idle', (f) => f.functionName === '(idle)'],
  ['GC', (f) => f.functionName === '(garbage collector)'],
  ['V8/native, unattributed', (f) => f.functionName === '(program)'],
  ['start-up (module loading)', (f) => /internal\/modules\/|internal\/bootstrap\/|cjs-module-lexer/.test(f.url) || (f.url === '' && ['compileFunction', 'compileSourceTextModule'].includes(f.functionName))],
  ['socket writes (TLS encryption and the syscall)', (f) => f.url === '' && f.functionName === 'writev'],
  ['log writes (write(2) to the stdout file)', (f) => f.url === '' && ['writeString', 'writeBuffer'].includes(f.functionName)],
  ['file reads (start-up, reload polling)', (f) => f.url === '' && ['openFileHandle', 'fstat', 'readFileUtf8', 'read', 'close', 'open'].includes(f.functionName)],
  // JSON.parse is a builtin that V8 inlines: its time shows as the self time of its caller, the
  // content-type parser (dist/server/app.js; bench/null-webhook.mjs, bench/bare-webhook.mjs).
  ['JSON parse', (f) => (f.url === '' && f.functionName === 'parse') || (f.functionName === '' && f.url.endsWith('dist/server/app.js') && f.lineNumber >= 95 && f.lineNumber <= 105)],
  ['JSON stringify', (f) => (f.url === '' && f.functionName === 'stringify') || f.url.includes('fast-json-stringify')],
  ['logging (pino)', (f) => /node_modules\/(pino|sonic-boom|fast-redact|thread-stream|on-exit-leak-free|quick-format-unescaped)/.test(f.url)],
  ['metrics', (f) => f.url.includes('node_modules/prom-client') || /dist\/server\/(metrics|metric-families)/.test(f.url) || f.url.includes('/metrics/')],
  ['fastify', (f) => /node_modules\/(fastify|@fastify|find-my-way|avvio|light-my-request|fast-querystring|abstract-logging|toad-cache|rfdc|process-warning)/.test(f.url)],
  ['policy', (f) => f.url.includes('dist/policy/') || f.url.includes('node_modules/minimatch')],
  ['admission (decode, admit, patch)', (f) => f.url.includes('dist/admission/') || f.url.includes('node_modules/fast-json-patch')],
  ['server (routes)', (f) => f.url.includes('dist/server/')],
  ['informer, cluster client', (f) => f.url.includes('dist/cluster/') || f.url.includes('@kubernetes/client-node')],
  ['TLS', (f) => /node:(_tls|tls)|internal\/tls|node:crypto/.test(f.url) || /^(TLSWrap|onhandshake|SecureContext)/.test(f.functionName)],
  ['HTTP (node:http)', (f) => /node:_http|node:http|internal\/http/.test(f.url)],
  ['streams, sockets, timers, events', (f) => /node:(net|stream|events|timers|buffer|string_decoder)|internal\/(streams|stream_base|timers|event|net|process\/task_queues|buffer)/.test(f.url)],
  ['other node internals', (f) => f.url.startsWith('node:') || f.url.startsWith('internal/')],
  ['other dependencies', (f) => f.url.includes('node_modules/')],
  ['other', () => true],
];

function groupOf(frame: CallFrame): string {
  for (const [name, test] of GROUPS) if (test(frame)) return name;
  return 'other';
}

function main(): number {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
  const file = positionals[0];
  if (positionals.length !== 1 || file === undefined) {
    console.error('usage: npx tsx bench/profile.ts FILE.cpuprofile [--top N]');
    return 2;
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const groups = new Map<string, number>();
  const functions = new Map<string, { us: number; group: string }>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const frame = (byId.get(id) as ProfileNode).callFrame;
    const group = groupOf(frame);
    groups.set(group, (groups.get(group) ?? 0) + us);
    if (group !== 'idle') busyUs += us;
    const where = frame.url === '' ? '(native)' : `${frame.url.replace(/^.*\/(node_modules\/|dist\/)/, '$1')}:${frame.lineNumber + 1}`;
    const key = `${frame.functionName || '(anonymous)'} ${where}`;
    const entry = functions.get(key) ?? { us: 0, group };
    entry.us += us;
    functions.set(key, entry);
  }
  const pct = (us: number): string => `${((100 * us) / busyUs).toFixed(1).padStart(5)}%`;
  console.log(`${file}: ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s profiled, ${(busyUs / 1e6).toFixed(1)} s busy (not idle); shares of the busy time\n`);
  console.log('by group (self time)');
  for (const [name, us] of [...groups].filter(([name]) => name !== 'idle').sort((a, b) => b[1] - a[1])) {
    console.log(`  ${pct(us)}  ${(us / 1e3).toFixed(0).padStart(7)} ms  ${name}`);
  }
  console.log(`\ntop ${values.top} functions (self time)`);
  for (const [key, { us, group }] of [...functions].filter(([, f]) => f.group !== 'idle').sort((a, b) => b[1].us - a[1].us).slice(0, Number(values.top))) {
    console.log(`  ${pct(us)}  ${key}  [${group}]`);
  }
  return 0;
}

process.exit(main());
