/**
 * The API's path table (spec web-api.md §2), with net/http.ServeMux's
 * behaviour that clients depend on: subtree redirects (301 to the slashed
 * path), 405 with Allow for unregistered methods, 404 for the rest.
 */
export type Route =
  | { kind: 'root' }
  | { kind: 'sources' }
  | { kind: 'known-dir' }
  | { kind: 'known'; key: string }
  | { kind: 'source-dir'; source: string }
  | { kind: 'source'; source: string; key: string }
  | { kind: 'instance-dir' }
  | { kind: 'instance'; id: string }
  | { kind: 'console'; file: string };

export type Resolution = { route: Route; methods: string[] } | { redirect: string } | { notFound: true };

export const API_PREFIX = '/gate-0/';
const GET = ['GET', 'HEAD', 'OPTIONS'];

export function resolve(path: string, sources: ReadonlySet<string>, consoleEnabled = false): Resolution {
  const cleaned = cleanPath(path);
  if (cleaned !== path) return { redirect: cleaned };
  if (path === '/gate-0') return { redirect: API_PREFIX };
  if (!path.startsWith(API_PREFIX)) return { notFound: true };
  const rest = path.slice(API_PREFIX.length);
  if (rest === '') return { route: { kind: 'root' }, methods: GET };
  // The web console's static files (console.ts), not part of the spec's API.
  if (consoleEnabled && rest === 'console') return { redirect: `${path}/` };
  if (consoleEnabled && rest.startsWith('console/')) return { route: { kind: 'console', file: rest.slice('console/'.length) }, methods: GET };
  if (rest === 'module' || rest === 'instance') return { redirect: `${path}/` };
  if (rest === 'module/') return { route: { kind: 'sources' }, methods: GET };
  if (rest === 'instance/') return { route: { kind: 'instance-dir' }, methods: [...GET, 'POST'] };
  if (rest.startsWith('instance/')) return { route: { kind: 'instance', id: rest.slice('instance/'.length) }, methods: [...GET, 'POST'] };
  if (rest.startsWith('module/')) {
    const sub = rest.slice('module/'.length);
    const slash = sub.indexOf('/');
    const name = slash < 0 ? sub : sub.slice(0, slash);
    if (name !== 'sha256' && !sources.has(name)) return { notFound: true };
    if (slash < 0) return { redirect: `${path}/` };
    const key = sub.slice(slash + 1);
    if (name === 'sha256') {
      if (key === '') return { route: { kind: 'known-dir' }, methods: [...GET, 'POST'] };
      return { route: { kind: 'known', key }, methods: [...GET, 'POST', 'PUT'] };
    }
    if (key === '') return { route: { kind: 'source-dir', source: name }, methods: GET };
    return { route: { kind: 'source', source: name, key }, methods: [...GET, 'POST'] };
  }
  return { notFound: true };
}

/** Like Go's path.Clean for request paths (keeps a trailing slash). */
function cleanPath(p: string): string {
  if (p === '' || p[0] !== '/') p = `/${p}`;
  if (!p.includes('//') && !p.includes('/.')) return p;
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  let c = `/${out.join('/')}`;
  if (p.endsWith('/') && c !== '/') c += '/';
  return c;
}
