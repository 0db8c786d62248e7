// @ts-check
// The command line both baseline servers of `npm run bench` take (null-webhook.mjs, bare-webhook.mjs),
// and the body limit they read up to (3 MiB: more than any review the bench sends).
//
//   node bench/<server>.mjs --port N --tls-cert FILE --tls-key FILE [--host 127.0.0.1] [its own options]

import { parseArgs } from 'node:util';

export const BODY_LIMIT_BYTES = 3 * 1024 * 1024;

/**
 * @param {string} script the server's file name, for the usage line
 * @param {Record<string, string | true>} [own] options of that server alone: name → the value's name in
 *   the usage line for an option taking a value, or `true` for a flag without one
 * @returns {{ port: number, host: string, tlsCert: string, tlsKey: string, own: Record<string, string | undefined>, flags: Record<string, boolean> }}
 */
export function baselineArgs(script, own = {}) {
  const { values: parsed } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      ...Object.fromEntries(
        Object.entries(own).map(([name, value]) => [name, { type: /** @type {'string' | 'boolean'} */ (value === true ? 'boolean' : 'string') }]),
      ),
    },
  });
  /** @type {Record<string, string | boolean | undefined>} */
  const values = parsed;
  if (!values.port || !values['tls-cert'] || !values['tls-key']) {
    const usage = Object.entries(own).map(([name, value]) => (value === true ? ` [--${name}]` : ` [--${name} ${value}]`)).join('');
    process.stderr.write(`usage: node bench/${script} --port N --tls-cert FILE --tls-key FILE [--host ADDR]${usage}\n`);
    process.exit(2);
  }
  return {
    port: Number(values.port),
    host: String(values.host ?? '127.0.0.1'),
    tlsCert: String(values['tls-cert']),
    tlsKey: String(values['tls-key']),
    own: Object.fromEntries(
      Object.entries(own)
        .filter(([, value]) => value !== true)
        .map(([name]) => [name, values[name] === undefined ? undefined : String(values[name])]),
    ),
    flags: Object.fromEntries(
      Object.entries(own)
        .filter(([, value]) => value === true)
        .map(([name]) => [name, values[name] === true]),
    ),
  };
}
