// JSON as the webhook receives it: parsed, untrusted, and checked before use.

/** A JSON object, as JSON.parse makes it. */
export type Json = Record<string, unknown>;

/** A JSON object: not null, not a list. */
export function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
