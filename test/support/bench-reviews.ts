// Realistic AdmissionReviews for the benchmark, generated in memory: what a kube-apiserver sends for
// a Pod CREATE made by a ReplicaSet controller (defaulted spec, managedFields, generateName, empty
// name: docs/kubernetes.md §1). Deterministic, so runs compare.
//
//   tenant  a small tenant pod, sandboxed by the policy (patch: runtimeClassName + rule annotation)
//   system  a small pod in kube-system, allowed by the `system` rule (no patch)
//   denied  a small tenant pod with an image from a blocked registry, denied 403 by a deny rule
//   large   a ~60 KB tenant pod: many containers, env vars, mounts and probes (sandboxed)

import type { Json } from './review.js';

export type FixtureName = 'tenant' | 'system' | 'denied' | 'large';

export interface Fixture {
  readonly name: FixtureName;
  readonly description: string;
  /** the namespace the review targets */
  readonly namespace: string;
  /** the decision the bench policy gives: checked before any load is sent */
  readonly expect: { readonly allowed: boolean; readonly patched: boolean };
  /** the whole AdmissionReview, serialised once */
  readonly body: string;
}


function container(name: string, image: string, envCount: number, index: number): Json {
  const env: Json[] = [];
  for (let i = 0; i < envCount; i++) {
    env.push(
      i % 5 === 4
        ? { name: `SECRET_${index}_${i}`, valueFrom: { secretKeyRef: { name: `${name}-secrets`, key: `key-${i}` } } }
        : { name: `SETTING_${index}_${i}`, value: `value-${index}-${i}-${'x'.repeat(12)}` },
    );
  }
  return {
    name,
    image,
    imagePullPolicy: 'IfNotPresent',
    args: ['--listen=:8080', `--name=${name}`, '--log-format=json'],
    ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
    env,
    resources: { limits: { cpu: '500m', memory: '256Mi' }, requests: { cpu: '100m', memory: '128Mi' } },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/app', readOnly: true },
      { name: 'kube-api-access-7xk2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
    ],
    livenessProbe: {
      httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' },
      initialDelaySeconds: 5,
      timeoutSeconds: 1,
      periodSeconds: 10,
      successThreshold: 1,
      failureThreshold: 3,
    },
    readinessProbe: {
      httpGet: { path: '/readyz', port: 8080, scheme: 'HTTP' },
      timeoutSeconds: 1,
      periodSeconds: 5,
      successThreshold: 1,
      failureThreshold: 3,
    },
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  };
}

function pod(namespace: string, app: string, containers: Json[]): Json {
  const hash = '7d9c5b8f6';
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      generateName: `${app}-${hash}-`,
      namespace,
      labels: { app, 'pod-template-hash': hash, 'app.kubernetes.io/part-of': 'shop' },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2025-01-01T00:00:00Z', 'prometheus.io/scrape': 'true' },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: `${app}-${hash}`,
          uid: '6f1c7a52-2b8e-4d1a-9f0e-3c5d7b9a1e24',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
      managedFields: [
        {
          manager: 'kube-controller-manager',
          operation: 'Update',
          apiVersion: 'v1',
          time: '2025-01-01T00:00:00Z',
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:metadata': { 'f:generateName': {}, 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:containers': {} } },
        },
      ],
    },
    spec: {
      volumes: [
        { name: 'config', configMap: { name: `${app}-config`, defaultMode: 420 } },
        {
          name: 'kube-api-access-7xk2p',
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
              { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
              { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
            ],
            defaultMode: 420,
          },
        },
      ],
      containers,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      serviceAccount: 'default',
      securityContext: { runAsUser: 10001, fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
    },
    status: {},
  };
}

function review(uid: string, object: Json): Json {
  const metadata = object.metadata as Json;
  return {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: '',
      namespace: metadata.namespace,
      operation: 'CREATE',
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: '0e5f3c2a-8d7b-4f6e-9a1c-2b3d4e5f6a7b',
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
}

/** A pod of about `targetBytes` serialised: containers of 30 env vars each until the size is reached. */
function largePod(targetBytes: number): Json {
  const containers: Json[] = [];
  let object = pod('tenant-0042', 'batch-suite', containers);
  for (let i = 0; JSON.stringify(object).length < targetBytes; i++) {
    containers.push(container(`worker-${i}`, `registry.example.com/team-0042/worker-${i % 4}:1.${i}.0`, 30, i));
    object = pod('tenant-0042', 'batch-suite', containers);
  }
  return object;
}

export const LARGE_POD_BYTES = 60 * 1024;

export function buildFixtures(): readonly Fixture[] {
  const make = (name: FixtureName, description: string, uid: string, object: Json, expect: Fixture['expect']): Fixture => ({
    name,
    description,
    namespace: (object.metadata as Json).namespace as string,
    expect,
    body: JSON.stringify(review(uid, object)),
  });
  return [
    make(
      'tenant',
      'small tenant pod, sandboxed',
      '3b1f6a0e-0001-4c2d-8e9f-000000000001',
      pod('tenant-0042', 'web', [
        container('web', 'registry.example.com/team-0042/web:1.4.2', 6, 0),
        container('envoy', 'docker.io/envoyproxy/envoy:v1.31.0', 2, 1),
      ]),
      { allowed: true, patched: true },
    ),
    make(
      'system',
      'small pod in kube-system, allowed',
      '3b1f6a0e-0002-4c2d-8e9f-000000000002',
      pod('kube-system', 'coredns', [container('coredns', 'registry.k8s.io/coredns/coredns:v1.11.3', 2, 0)]),
      { allowed: true, patched: false },
    ),
    make(
      'denied',
      'small tenant pod, image from a blocked registry, denied',
      '3b1f6a0e-0003-4c2d-8e9f-000000000003',
      pod('tenant-0042', 'miner', [container('miner', 'evil.example.net/tools/xmrig:6.21.0', 4, 0)]),
      { allowed: false, patched: false },
    ),
    make('large', `~${LARGE_POD_BYTES / 1024} KB tenant pod, sandboxed`, '3b1f6a0e-0004-4c2d-8e9f-000000000004', largePod(LARGE_POD_BYTES), {
      allowed: true,
      patched: true,
    }),
  ];
}
