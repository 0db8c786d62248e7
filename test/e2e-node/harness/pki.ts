// The credentials between kube-apiserver and the test node's kubelet: a CA of its own, which the kubelet
// trusts for client certificates (authentication.x509.clientCAFile), and the client certificate the
// apiserver presents (--kubelet-client-certificate/--kubelet-client-key) for logs, exec and the like.
// Made before the control plane starts, since those apiserver flags must name the files.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface KubeletClientPki {
  caCert: string;
  clientCert: string;
  clientKey: string;
  /** The kube-apiserver flags that make it present the client certificate to kubelets, by InternalIP. */
  apiserverArgs: string[];
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd });
  } catch (error) {
    throw new Error(`openssl ${args.join(' ')} failed: ${(error as { stderr?: string }).stderr || String(error)}`);
  }
}

export async function makeKubeletClientPki(dir: string): Promise<KubeletClientPki> {
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(
    ['req', '-x509', ...ecKey, '-sha256', '-days', '2', '-subj', '/CN=sandbox-webhook-e2e-kubelet-client-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-keyout', 'kubelet-client-ca.key', '-out', 'kubelet-client-ca.crt'],
    dir,
  );
  writeFileSync(join(dir, 'client.ext'), 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n');
  await openssl(['req', ...ecKey, '-subj', '/O=system:masters/CN=kube-apiserver-kubelet-client', '-keyout', 'apiserver-kubelet-client.key', '-out', 'client.csr'], dir);
  await openssl(
    ['x509', '-req', '-sha256', '-days', '2', '-in', 'client.csr', '-CA', 'kubelet-client-ca.crt', '-CAkey', 'kubelet-client-ca.key',
      '-CAcreateserial', '-extfile', 'client.ext', '-out', 'apiserver-kubelet-client.crt'],
    dir,
  );
  const pki = {
    caCert: join(dir, 'kubelet-client-ca.crt'),
    clientCert: join(dir, 'apiserver-kubelet-client.crt'),
    clientKey: join(dir, 'apiserver-kubelet-client.key'),
  };
  return {
    ...pki,
    apiserverArgs: [
      `--kubelet-client-certificate=${pki.clientCert}`,
      `--kubelet-client-key=${pki.clientKey}`,
      // The node registers a Hostname address nobody resolves; its InternalIP is its --node-ip.
      '--kubelet-preferred-address-types=InternalIP',
    ],
  };
}
