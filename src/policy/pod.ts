// What the policy reads from a Pod, extracted once per review with its shape checked. The
// apiserver sends typed, defaulted objects, but the webhook must not trust that: a field of the
// wrong type is an error (fail closed), never a silent skip that could let a pod through.

import { parseImage, type ParsedImage } from './image.js';
import type { Labels } from './selector.js';
import { isRecord, type Json } from '../json.js';

export const MIRROR_POD_ANNOTATION = 'kubernetes.io/config.mirror';

export interface PodImage {
  /** where it was found: `spec.initContainers[0].image`, `spec.volumes[2].image.reference` */
  readonly path: string;
  /** what runs or mounts it, in words: `container "app"`, `volume "models"` */
  readonly owner: string;
  readonly image: string;
  readonly parsed: ParsedImage;
}

export interface PodView {
  /** name, or generateName followed by `*`, for messages and logs */
  readonly displayName: string;
  readonly labels: Labels;
  readonly annotations: Labels;
  readonly runtimeClassName: string | undefined;
  readonly images: readonly PodImage[];
  /** fields a sandboxed pod may not use (docs/kubernetes.md §5), as paths with the container or volume */
  readonly incompatibilities: readonly string[];
  readonly nodeSelector: Labels;
  readonly isMirror: boolean;
}

export type ReadPodResult = { ok: true; pod: PodView } | { ok: false; error: string };


class ShapeError extends Error {}


// Each check takes its field's path in two parts, a path and a field name or list index, joined
// only for an error message: a review whose pod is well formed builds no path strings.
type Field = string | number;

function shapeError(path: string, field: Field, expected: string): ShapeError {
  return new ShapeError(`${path}${typeof field === 'number' ? `[${field}]` : field}: expected ${expected}`);
}

function optionalObject(value: unknown, path: string, field: Field = ''): Json | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isRecord(value)) throw shapeError(path, field, 'an object');
  return value;
}

function optionalList(value: unknown, path: string, field: Field = ''): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw shapeError(path, field, 'a list');
  return value;
}

function optionalString(value: unknown, path: string, field: Field = ''): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw shapeError(path, field, 'a string');
  return value;
}

function stringMap(value: unknown, path: string): Labels {
  const map = optionalObject(value, path);
  if (!map) return {};
  // JSON.parse makes plain objects: for-in visits their own keys, without the array Object.keys makes.
  for (const key in map) {
    if (typeof map[key] !== 'string') throw new ShapeError(`${path}.${key}: expected a string`);
  }
  return map as Labels;
}

function optionalBoolean(value: unknown, path: string, field: Field = ''): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw shapeError(path, field, 'a boolean');
  return value;
}

const NAME_MAX_CHARS = 253;
const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;
const HOST_NAMESPACE_FIELDS = ['hostNetwork', 'hostPID', 'hostIPC'] as const;

export function readPod(object: unknown): ReadPodResult {
  try {
    if (!isRecord(object)) throw new ShapeError('object: expected a Pod object');
    const metadata = optionalObject(object.metadata, 'metadata') ?? {};
    const spec = optionalObject(object.spec, 'spec');
    if (!spec) throw new ShapeError('spec: required');
    const name = optionalString(metadata.name, 'metadata.name');
    const generateName = optionalString(metadata.generateName, 'metadata.generateName');
    // Mutating webhooks run before the apiserver validates the object: a name over the apiserver's
    // own limit (a DNS subdomain, 253 characters) would otherwise reach messages and logs.
    for (const [field, value] of [['metadata.name', name], ['metadata.generateName', generateName]] as const) {
      if (value !== undefined && value.length > NAME_MAX_CHARS) throw new ShapeError(`${field}: longer than ${NAME_MAX_CHARS} characters`);
    }
    const annotations = stringMap(metadata.annotations, 'metadata.annotations');

    const incompatibilities: string[] = [];
    for (const field of HOST_NAMESPACE_FIELDS) {
      if (optionalBoolean(spec[field], 'spec.', field)) incompatibilities.push(`spec.${field}`);
    }
    const volumeImages: PodImage[] = [];
    const volumes = optionalList(spec.volumes, 'spec.volumes');
    for (let i = 0; i < volumes.length; i++) {
      const volume = optionalObject(volumes[i], 'spec.volumes', i);
      if (!volume) continue;
      const volumeName = String(volume.name ?? '');
      if (volume.hostPath !== undefined && volume.hostPath !== null) {
        incompatibilities.push(`spec.volumes[${i}].hostPath (volume "${volumeName}")`);
      }
      // An image volume's content is mounted into the pod's containers (docs/kubernetes.md §7): its
      // reference is an image like any container's, for every rule.
      const source = optionalObject(volume.image, `spec.volumes[${i}]`, '.image');
      if (source) {
        const path = `spec.volumes[${i}].image.reference`;
        const image = optionalString(source.reference, path) ?? '';
        volumeImages.push({ path, owner: `volume "${volumeName}"`, image, parsed: parseImage(image) });
      }
    }

    const images: PodImage[] = [];
    for (const list of CONTAINER_LISTS) {
      const entries = optionalList(spec[list], 'spec.', list);
      for (let i = 0; i < entries.length; i++) {
        const path = `spec.${list}[${i}]`;
        const container = optionalObject(entries[i], path) ?? {};
        const containerName = optionalString(container.name, path, '.name') ?? '';
        const image = optionalString(container.image, path, '.image') ?? '';
        images.push({ path: `${path}.image`, owner: `container "${containerName}"`, image, parsed: parseImage(image) });
        const securityContext = optionalObject(container.securityContext, path, '.securityContext');
        if (securityContext && optionalBoolean(securityContext.privileged, path, '.securityContext.privileged')) {
          incompatibilities.push(`${path}.securityContext.privileged (container "${containerName}")`);
        }
      }
    }

    for (const image of volumeImages) images.push(image);

    return {
      ok: true,
      pod: {
        displayName: name || (generateName ? `${generateName}*` : '<unnamed>'),
        labels: stringMap(metadata.labels, 'metadata.labels'),
        annotations,
        runtimeClassName: optionalString(spec.runtimeClassName, 'spec.runtimeClassName') || undefined,
        images,
        incompatibilities,
        nodeSelector: stringMap(spec.nodeSelector, 'spec.nodeSelector'),
        isMirror: Object.prototype.hasOwnProperty.call(annotations, MIRROR_POD_ANNOTATION),
      },
    };
  } catch (error) {
    if (error instanceof ShapeError) return { ok: false, error: error.message };
    throw error;
  }
}
