import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CHART_DIR, valueRows, valuesTable, withTable } from '../../hack/chart-values-table.js';

const valuesYaml = readFileSync(join(CHART_DIR, 'values.yaml'), 'utf8');
const rows = valueRows(valuesYaml);

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  patternProperties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  $ref?: string;
}
const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8')) as Schema & { definitions: Record<string, Schema> };

/**
 * The schema of a key path, following $ref; undefined when the schema does not describe it. A free-form
 * object (no properties, additionalProperties not false: a securityContext) describes all below it.
 */
function schemaAt(path: string[]): Schema | undefined {
  let node: Schema | undefined = schema;
  for (const key of path) {
    if (node?.$ref) node = schema.definitions[node.$ref.replace('#/definitions/', '')];
    if (!node) return undefined;
    if (!node.properties && !node.patternProperties && node.additionalProperties === undefined) return node;
    const byPattern: Schema | undefined = Object.entries(node.patternProperties ?? {}).find(([pattern]) => new RegExp(pattern, 'u').test(key))?.[1];
    const next: Schema | undefined =
      node.properties?.[key] ?? byPattern ?? (typeof node.additionalProperties === 'object' ? node.additionalProperties : undefined);
    if (!next) return undefined;
    node = next;
  }
  return node;
}

/** Every key path of values.yaml (maps walked, lists are leaves). */
function keyPaths(value: unknown, prefix: string[] = []): string[][] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [prefix];
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return [prefix];
  return [prefix, ...entries.flatMap(([key, child]) => keyPaths(child, [...prefix, key]))].filter((p) => p.length > 0);
}

describe('the chart README values table', () => {
  it('is what hack/chart-values-table.ts generates from values.yaml (run it when this fails)', () => {
    const readme = readFileSync(join(CHART_DIR, 'README.md'), 'utf8');
    expect(withTable(readme, valuesTable(rows))).toBe(readme);
  });

  it('describes every value: each row has a `# --` comment in values.yaml', () => {
    expect(rows.filter((row) => row.description === '').map((row) => row.key)).toEqual([]);
  });

  it('takes a documented map as one row, with its undocumented keys in the default', () => {
    const resources = rows.find((row) => row.key === 'resources');
    expect(resources?.defaultValue).toBe('{"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"memory":"256Mi"}}');
    expect(rows.some((row) => row.key.startsWith('resources.'))).toBe(false);
  });
});

describe('values.schema.json', () => {
  it('describes every key of values.yaml', () => {
    const missing = keyPaths(parse(valuesYaml)).filter((path) => schemaAt(path) === undefined).map((path) => path.join('.'));
    expect(missing).toEqual([]);
  });

  it('can fail: a key it does not describe is found', () => {
    expect(schemaAt(['webhook', 'noSuchValue'])).toBeUndefined();
  });
});
