// The serving certificate: loaded at start, reloaded when cert-manager or the chart rotates the
// mounted Secret. New connections get the new certificate (server.setSecureContext); connections
// already open keep theirs, so requests in flight never fail.

import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContextOptions } from 'node:tls';

export interface ServingCertificate {
  /** PEM, exactly as read (also the baseline the file watch compares against) */
  readonly key: Buffer;
  readonly cert: Buffer;
  /** notAfter of the leaf certificate */
  readonly notAfter: Date;
  readonly fingerprint256: string;
}

/**
 * The TLS settings of every secure context the server uses, at start and after each reload, so a
 * reload never changes more than the certificate. TLS 1.2 is the apiserver's minimum (docs/kubernetes.md §1).
 */
export function secureContextOptions(certificate: { readonly key: string | Buffer; readonly cert: string | Buffer }): SecureContextOptions {
  return { key: certificate.key, cert: certificate.cert, minVersion: 'TLSv1.2' };
}

/** Checks that key and certificate parse and belong together before they are used. */
export function checkCertificate(key: Buffer, cert: Buffer): ServingCertificate {
  const leaf = new X509Certificate(cert);
  if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new Error('the TLS key does not belong to the certificate');
  createSecureContext(secureContextOptions({ key, cert }));
  return { key, cert, notAfter: new Date(leaf.validTo), fingerprint256: leaf.fingerprint256 };
}

export async function loadCertificate(certFile: string, keyFile: string): Promise<ServingCertificate> {
  let cert: Buffer;
  let key: Buffer;
  try {
    [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)]);
  } catch (error) {
    throw new Error(`cannot read the TLS certificate or key: ${(error as Error).message}`);
  }
  try {
    return checkCertificate(key, cert);
  } catch (error) {
    throw new Error(`invalid TLS certificate ${certFile} or key ${keyFile}: ${(error as Error).message}`);
  }
}
