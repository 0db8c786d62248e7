// Reads a SandboxPolicy YAML file and compiles it. YAML syntax errors carry line and column;
// policy errors carry their path (`spec.rules[2].match.anyImage[0]: invalid glob ...`).

import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { compilePolicy, type CompileResult } from '../policy/policy.js';

const MAX_POLICY_BYTES = 16 * 1024 * 1024;

export function parsePolicyText(text: string): CompileResult {
  const documents = parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true, strict: true });
  if (!Array.isArray(documents)) {
    return { ok: false, errors: ['the file holds no YAML document'], warnings: [] };
  }
  const nonEmpty = documents.filter((doc) => doc.contents !== null || doc.errors.length > 0);
  if (nonEmpty.length === 0) return { ok: false, errors: ['the file holds no YAML document'], warnings: [] };
  if (nonEmpty.length > 1) {
    return { ok: false, errors: [`expected one YAML document (one SandboxPolicy), found ${nonEmpty.length}`], warnings: [] };
  }
  const doc = nonEmpty[0]!;
  if (doc.errors.length > 0) {
    return { ok: false, errors: doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`), warnings: [] };
  }
  return compilePolicy(doc.toJS({ maxAliasCount: 100 }));
}

export async function loadPolicyFile(path: string): Promise<CompileResult> {
  let text: string;
  try {
    const buffer = await readFile(path);
    if (buffer.length > MAX_POLICY_BYTES) {
      return { ok: false, errors: [`${path}: larger than ${MAX_POLICY_BYTES} bytes`], warnings: [] };
    }
    text = buffer.toString('utf8');
  } catch (error) {
    return { ok: false, errors: [`${path}: cannot read: ${(error as Error).message}`], warnings: [] };
  }
  return parsePolicyText(text);
}
