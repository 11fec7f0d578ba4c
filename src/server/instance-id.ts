/** Instance IDs: canonical lower-case RFC 4122 version-4 UUIDs (spec web-api.md §3.5). */
const UUID_FORM = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** The problem with an instance id, or undefined if it is valid. */
export function instanceIdProblem(s: string): string | undefined {
  if (s.startsWith('{') || s.endsWith('}')) return 'instance UUID must not be surrounded by brackets';
  if (/^urn:uuid:/i.test(s)) return 'instance UUID must not have namespace prefix';
  if (!UUID_FORM.test(s)) return 'instance id must be a UUID';
  if (s !== s.toLowerCase()) return 'instance UUID must use lower-case hex encoding';
  if (s[14] !== '4') return 'instance UUID version must be 4';
  if (!'89ab'.includes(s[19]!)) return 'instance UUID variant must be RFC 4122';
  return undefined;
}
