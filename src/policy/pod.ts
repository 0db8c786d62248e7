// What the policy reads from a Pod, extracted once per review with its shape checked. The
// apiserver sends typed, defaulted objects, but the webhook must not trust that: a field of the
// wrong type is an error (fail closed), never a silent skip that could let a pod through.

import { parseImage, type ParsedImage } from './image.js';
import type { Labels } from './selector.js';

export const MIRROR_POD_ANNOTATION = 'kubernetes.io/config.mirror';

export interface PodImage {
  /** where it was found: `spec.initContainers[0].image` */
  readonly path: string;
  readonly container: string;
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
  /** fields a sandboxed pod may not use (KUBERNETES.md §5), as paths with the container or volume */
  readonly incompatibilities: readonly string[];
  readonly nodeSelector: Labels;
  readonly isMirror: boolean;
}

export type ReadPodResult = { ok: true; pod: PodView } | { ok: false; error: string };

type Json = Record<string, unknown>;

class ShapeError extends Error {}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Each check takes its field's path in two parts, a path and a field name or list index, joined
// only for an error message: a review whose pod is well formed builds no path strings.
type Field = string | number;

function shapeError(path: string, field: Field, expected: string): ShapeError {
  return new ShapeError(`${path}${typeof field === 'number' ? `[${field}]` : field}: expected ${expected}`);
}

function optionalObject(value: unknown, path: string, field: Field = ''): Json | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw shapeError(path, field, 'an object');
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

const CONTAINER_LISTS = ['initContainers', 'containers', 'ephemeralContainers'] as const;
const HOST_NAMESPACE_FIELDS = ['hostNetwork', 'hostPID', 'hostIPC'] as const;

// Pods repeat images (every replica of a Deployment, the same sidecars in every namespace): each
// reference is parsed once and its frozen result shared. Bounded, so that references sent to fill
// it cost at most this much memory; when full it starts over.
const PARSED_IMAGES = new Map<string, ParsedImage>();
const PARSED_IMAGES_MAX_ENTRIES = 4096;
const PARSED_IMAGE_MAX_CHARS = 512;

function parseImageOnce(image: string): ParsedImage {
  let parsed = PARSED_IMAGES.get(image);
  if (parsed === undefined) {
    parsed = parseImage(image);
    if (parsed.ok) Object.freeze(parsed.ref);
    Object.freeze(parsed);
    if (image.length <= PARSED_IMAGE_MAX_CHARS) {
      if (PARSED_IMAGES.size >= PARSED_IMAGES_MAX_ENTRIES) PARSED_IMAGES.clear();
      PARSED_IMAGES.set(image, parsed);
    }
  }
  return parsed;
}

// `spec.containers[0]` and `spec.containers[0].image`, built once for the indices pods use rather
// than on every review.
const CACHED_PATHS = 32;
const PATHS = new Map(
  CONTAINER_LISTS.map((list) => {
    const containers = Array.from({ length: CACHED_PATHS }, (_, i) => `spec.${list}[${i}]`);
    return [list, { containers, images: containers.map((path) => `${path}.image`) }] as const;
  }),
);

function containerPath(list: (typeof CONTAINER_LISTS)[number], i: number): string {
  return PATHS.get(list)?.containers[i] ?? `spec.${list}[${i}]`;
}

function imagePath(list: (typeof CONTAINER_LISTS)[number], i: number): string {
  return PATHS.get(list)?.images[i] ?? `spec.${list}[${i}].image`;
}

export function readPod(object: unknown): ReadPodResult {
  try {
    if (!isObject(object)) throw new ShapeError('object: expected a Pod object');
    const metadata = optionalObject(object.metadata, 'metadata') ?? {};
    const spec = optionalObject(object.spec, 'spec');
    if (!spec) throw new ShapeError('spec: required');
    const name = optionalString(metadata.name, 'metadata.name');
    const generateName = optionalString(metadata.generateName, 'metadata.generateName');
    const annotations = stringMap(metadata.annotations, 'metadata.annotations');

    const incompatibilities: string[] = [];
    for (const field of HOST_NAMESPACE_FIELDS) {
      if (optionalBoolean(spec[field], 'spec.', field)) incompatibilities.push(`spec.${field}`);
    }
    const volumes = optionalList(spec.volumes, 'spec.volumes');
    for (let i = 0; i < volumes.length; i++) {
      const volume = optionalObject(volumes[i], 'spec.volumes', i);
      if (volume && volume.hostPath !== undefined && volume.hostPath !== null) {
        incompatibilities.push(`spec.volumes[${i}].hostPath (volume "${String(volume.name ?? '')}")`);
      }
    }

    const images: PodImage[] = [];
    for (const list of CONTAINER_LISTS) {
      const entries = optionalList(spec[list], 'spec.', list);
      for (let i = 0; i < entries.length; i++) {
        const path = containerPath(list, i);
        const container = optionalObject(entries[i], path) ?? {};
        const containerName = optionalString(container.name, path, '.name') ?? '';
        const image = optionalString(container.image, path, '.image') ?? '';
        images.push({ path: imagePath(list, i), container: containerName, image, parsed: parseImageOnce(image) });
        const securityContext = optionalObject(container.securityContext, path, '.securityContext');
        if (securityContext && optionalBoolean(securityContext.privileged, path, '.securityContext.privileged')) {
          incompatibilities.push(`${path}.securityContext.privileged (container "${containerName}")`);
        }
      }
    }

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
