// Certificates for a throwaway control plane, made with the system openssl CLI (ECDSA P-256: quick
// to generate, accepted by Go TLS and by the service-account token signer).
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface ControlPlaneCerts {
  dir: string;
  caCert: string;
  caKey: string;
  /** kube-apiserver serving certificate: 127.0.0.1, localhost and the in-cluster service names. */
  servingCert: string;
  servingKey: string;
  /** Admin client certificate: CN=admin, O=system:masters (RBAC superuser). */
  adminCert: string;
  adminKey: string;
  /** Service-account token signing key pair. */
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args.join(' ')} failed: ${stderr || String(error)}`);
  }
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function signedCert(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
  validityDays: number,
): Promise<void> {
  writeFileSync(join(dir, `${name}.ext`), extensions);
  await openssl(['req', ...ecKey, '-subj', subject, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
  await openssl(
    ['x509', '-req', '-sha256', '-days', String(validityDays), '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key',
      '-CAcreateserial', '-extfile', `${name}.ext`, '-out', `${name}.crt`],
    dir,
  );
}

export async function generateControlPlaneCerts(
  dir: string,
  options: { serviceClusterIp?: string; validityDays?: number } = {},
): Promise<ControlPlaneCerts> {
  const days = options.validityDays ?? 2;
  const serviceIp = options.serviceClusterIp ?? '10.0.0.1';
  await openssl(
    ['req', '-x509', ...ecKey, '-sha256', '-days', String(days), '-subj', '/CN=sandbox-webhook-e2e-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-keyout', 'ca.key', '-out', 'ca.crt'],
    dir,
  );
  await signedCert(
    dir,
    'apiserver',
    '/CN=kube-apiserver',
    [
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature, keyEncipherment',
      'extendedKeyUsage = serverAuth',
      'subjectAltName = IP:127.0.0.1, DNS:localhost, IP:' + serviceIp +
        ', DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local',
      '',
    ].join('\n'),
    days,
  );
  await signedCert(
    dir,
    'admin',
    '/O=system:masters/CN=admin',
    ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'extendedKeyUsage = clientAuth', ''].join('\n'),
    days,
  );
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'sa.key'], dir);
  await openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    servingCert: join(dir, 'apiserver.crt'),
    servingKey: join(dir, 'apiserver.key'),
    adminCert: join(dir, 'admin.crt'),
    adminKey: join(dir, 'admin.key'),
    serviceAccountKey: join(dir, 'sa.key'),
    serviceAccountPublicKey: join(dir, 'sa.pub'),
  };
}
