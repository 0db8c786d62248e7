// @ts-check
// The command line both baseline servers of `npm run bench` take (null-webhook.mjs, bare-webhook.mjs),
// and the body limit they read up to (3 MiB: more than any review the bench sends).
//
//   node bench/<server>.mjs --port N --tls-cert FILE --tls-key FILE [--host 127.0.0.1]

import { parseArgs } from 'node:util';

export const BODY_LIMIT_BYTES = 3 * 1024 * 1024;

/** @param {string} script the server's file name, for the usage line */
export function baselineArgs(script) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
    },
  });
  if (!values.port || !values['tls-cert'] || !values['tls-key']) {
    process.stderr.write(`usage: node bench/${script} --port N --tls-cert FILE --tls-key FILE [--host ADDR]\n`);
    process.exit(2);
  }
  return { port: Number(values.port), host: values.host ?? '127.0.0.1', tlsCert: values['tls-cert'], tlsKey: values['tls-key'] };
}
