/**
 * The npm package (package.json `files` and `exports`, as `npm pack` sees
 * them): a page can use `gate-ts/core` and `gate-ts/browser` with its
 * workers, and gate-server from the package can serve its console.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { CONSOLE_FILES, PACKAGE_ROOT } from '../../src/server/console.js';

const root = fileURLToPath(PACKAGE_ROOT);

describe('the npm package', () => {
  it('holds the core and browser entry points, the workers and the console', () => {
    // --ignore-scripts: the files are built already (npm test builds them); prepare would rebuild.
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const files = new Set((JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path));
    const pkg = JSON.parse(readFileSync(new URL('package.json', PACKAGE_ROOT), 'utf8')) as { exports: Record<string, string | Record<string, string>> };
    const targets = Object.values(pkg.exports).flatMap((e) => (typeof e === 'string' ? [e] : Object.values(e)));
    const expanded = targets.flatMap((t) => (t.includes('*') ? ['gate-executor-worker', 'gate-prepare-worker'].map((w) => t.replace('*', w)) : [t]));
    for (const t of expanded) assert.ok(files.has(t.replace(/^\.\//, '')), `${t} (package.json exports) is not in the package`);
    for (const { url } of CONSOLE_FILES.values()) {
      const path = fileURLToPath(url).slice(root.length);
      assert.ok(files.has(path), `${path} (served at /gate-0/console/) is not in the package`);
    }
    // Not for pages: source maps and the test harness stay out.
    assert.deepEqual([...files].filter((f) => f.endsWith('.map') && f.startsWith('dist/browser') || f.startsWith('dist/browser-test')), []);
  });
});
