// Runtime options: one declaration per option, from which the parser, --help and the README table
// come; flags win over the environment, which wins over defaults; bad values are errors naming them.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OPTIONS, optionsTable, packageRoot, parseOptions, usage, type Options } from '../../src/config/options.js';

function parsed(argv: string[], env: NodeJS.ProcessEnv = {}): Options {
  const result = parseOptions(argv, env);
  if (result.ok !== true) throw new Error(`expected options, got ${JSON.stringify(result)}`);
  return result.options;
}

function errors(argv: string[], env: NodeJS.ProcessEnv = {}): string[] {
  const result = parseOptions(argv, env);
  if (result.ok !== false) throw new Error(`expected errors, got ${JSON.stringify(result)}`);
  return result.errors;
}

describe('options', () => {
  it("README.md's options table is the one the declarations print (npm run docs:options)", () => {
    const readme = readFileSync(resolve(packageRoot(), 'README.md'), 'utf8');
    const between = /<!-- options:start -->\n([\s\S]*?)<!-- options:end -->/.exec(readme);
    expect(between, 'README.md has no <!-- options:start --> ... <!-- options:end --> block').not.toBeNull();
    expect(between?.[1]).toBe(optionsTable());
  });

  it('every option is declared once, and --help names each flag and variable', () => {
    const flags = OPTIONS.map((option) => option.flag);
    const keys = OPTIONS.map((option) => option.key);
    expect(new Set(flags).size).toBe(flags.length);
    expect(new Set(keys).size).toBe(keys.length);
    expect(Object.keys(parsed([])).sort()).toEqual([...keys].sort());
    const help = usage();
    for (const option of OPTIONS) {
      expect(help).toContain(`--${option.flag}`);
      expect(help).toContain(option.env);
    }
  });

  it('the defaults', () => {
    expect(parsed([])).toMatchObject({
      port: 8443,
      host: '0.0.0.0',
      metricsPort: 8080,
      policyFile: resolve(packageRoot(), 'policies/default.yaml'),
      logLevel: 'info',
      kubeconfig: undefined,
      offline: false,
      shutdownDelaySeconds: 5,
      requestTimeoutMs: 2500,
      headersTimeoutMs: 2000,
      readTimeoutMs: 5000,
      maxConnections: 256,
      maxBufferedBodyMiB: 32,
    });
  });

  it.each([
    ['a flag', ['--metrics-port', '9090'], {}, { metricsPort: 9090 }],
    ['a variable', [], { METRICS_PORT: '9091' }, { metricsPort: 9091 }],
    ['a flag over a variable', ['--max-connections', '10'], { MAX_CONNECTIONS: '20' }, { maxConnections: 10 }],
    ['an empty variable is unset', [], { MAX_CONNECTIONS: '' }, { maxConnections: 256 }],
    ['metrics port 0 turns the metrics listener off', ['--metrics-port', '0'], {}, { metricsPort: 0 }],
    ['a boolean flag', ['--offline'], {}, { offline: true }],
    ['a boolean variable', [], { OFFLINE: 'true' }, { offline: true }],
    ['a path resolves against the working directory', ['--policy', 'p.yaml'], {}, { policyFile: resolve('p.yaml') }],
  ])('%s', (_name, argv, env, expected) => {
    expect(parsed(argv, env)).toMatchObject(expected);
  });

  it.each([
    ['a port out of range', ['--port', '70000'], {}, '--port: must be an integer from 1 to 65535, got "70000"'],
    ['a negative metrics port', [], { METRICS_PORT: '-1' }, 'METRICS_PORT: must be an integer from 0 to 65535, got "-1"'],
    ['no connections', ['--max-connections', '0'], {}, '--max-connections: must be an integer from 1 to 65535, got "0"'],
    ['an unknown log level', ['--log-level', 'loud'], {}, '--log-level: must be one of fatal, error, warn, info, debug, trace, silent, got "loud"'],
    ['a boolean variable that is not true or false', [], { OFFLINE: 'yes' }, 'OFFLINE: must be true or false, got "yes"'],
    ['a read timeout shorter than the headers timeout', ['--read-timeout-ms', '1000'], {}, '--read-timeout-ms: must be at least --headers-timeout-ms (2000), got 1000'],
    ['an unknown flag', ['--nope'], {}, "Unknown option '--nope'"],
  ])('%s is an error that names it', (_name, argv, env, message) => {
    expect(errors(argv, env).join('\n')).toContain(message);
  });

  it('reports every bad option at once', () => {
    expect(errors(['--port', 'x', '--metrics-port', 'y'])).toHaveLength(2);
  });
});
