/**
 * The web console, loaded from a real gate-server into Chromium and used as
 * a person would (through its buttons, labels and forms): sign in with a key
 * generated in the browser and with a pasted OpenSSH key, upload and launch
 * a module, see its output and send it input (untrusted text stays text),
 * suspend, resume, snapshot, kill and delete, and move the example counter
 * (examples/tally.c) server → tab → server, its count going on. Keeps a
 * screenshot of the console at test/browser/artifacts/console.png (gitignored).
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import sshpk from 'sshpk';
import type { Browser, Page } from 'playwright-core';
import { identityFromPrivateKey } from '../../src/client/identity.js';
import { launchChromium } from '../helpers/browser.js';
import { request, startTestServer, type TestServer } from '../helpers/server.js';

const ROOT = new URL('../../../', import.meta.url);
const ARTIFACTS = new URL('test/browser/artifacts/', ROOT);
const echo = readFileSync(new URL('examples/echo.wasm', ROOT));
const WAIT = { timeout: 30_000 };

/** The instance ids of the console's instance table, with where they run and their state. */
async function rows(page: Page): Promise<Array<{ id: string; where: string; state: string }>> {
  return page.$$eval('#instance-rows tr[data-instance]', (trs) =>
    trs.map((tr) => ({ id: tr.getAttribute('data-instance')!, where: tr.children[1]!.textContent!, state: tr.children[2]!.textContent! })),
  );
}

async function waitRow(page: Page, id: string, where: string, state: RegExp): Promise<void> {
  await page
    .waitForFunction(
    ([id, where, state]) => {
      const tr = document.querySelector(`#instance-rows tr[data-instance="${id}"]`);
      return tr !== null && tr.children[1]!.textContent === where && new RegExp(state!).test(tr.children[2]!.textContent!);
    },
    [id, where, state.source],
    WAIT,
  )
    .catch(async (e: Error) => {
      throw new Error(`instance ${id} is not ${where} ${state}: the table shows ${JSON.stringify(await rows(page))}, the status line ${JSON.stringify(await statusText(page))}`, { cause: e });
    });
}

/** Waits until instance `id` has no row (it was deleted or moved); says what the page shows otherwise. */
async function waitGone(page: Page, id: string): Promise<void> {
  await page.waitForFunction((id) => !document.querySelector(`#instance-rows tr[data-instance="${id}"]`), id, WAIT).catch(async (e: Error) => {
    throw new Error(`instance ${id} still has a row: the table shows ${JSON.stringify(await rows(page))}, the status line ${JSON.stringify(await statusText(page))}`, { cause: e });
  });
}

/** The tally counts in the output pane, in order. */
async function counts(page: Page): Promise<number[]> {
  const text = await page.textContent('#output');
  return [...(text ?? '').matchAll(/^tally (\d+)(?: \(\+100\))?$/gm)].map((m) => Number(m[1]));
}

/** Waits until the output shows more tally lines than `n`, and returns all counts. */
async function moreCounts(page: Page, n: number): Promise<number[]> {
  await page.waitForFunction((n) => ((document.querySelector('#output')?.textContent ?? '').match(/^tally \d+( \(\+100\))?$/gm) ?? []).length > n, n, WAIT);
  return counts(page);
}

async function click(page: Page, name: string): Promise<void> {
  await page.getByRole('button', { name, exact: true }).click();
}

async function statusText(page: Page): Promise<string> {
  return (await page.textContent('#status')) ?? '';
}

describe('the web console', () => {
  let server!: TestServer;
  let browser!: Browser;
  let page!: Page;
  const errors: string[] = [];
  before(async () => {
    server = await startTestServer();
    browser = await launchChromium();
    page = await browser.newPage();
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('is served by gate-server with a strict Content-Security-Policy and signs in with a key generated in the browser', async () => {
    const res = await page.goto(`${server.url}/gate-0/console/`);
    assert.equal(res?.status(), 200);
    const headers = res!.headers();
    assert.match(headers['content-security-policy']!, /default-src 'none'/);
    assert.match(headers['content-security-policy']!, /script-src 'self' 'wasm-unsafe-eval'/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    await page.getByLabel('Private key').waitFor(WAIT);
    await click(page, 'Generate a key in this browser');
    await page.waitForFunction(() => document.querySelector('#whoami')?.textContent?.startsWith('Signed in'), undefined, WAIT);
    assert.match(await page.inputValue('#pubkey'), /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* gate-console$/);
    // The key stays in the browser: a reload signs in again.
    await page.reload();
    await page.waitForFunction(() => document.querySelector('#whoami')?.textContent?.startsWith('Signed in'), undefined, WAIT);
  });

  it('uploads and launches a module, shows its output as text and sends it input', async () => {
    await page.setInputFiles('#upload-file', { name: 'echo.wasm', mimeType: 'application/wasm', buffer: echo });
    await page.getByLabel('Tag (optional)').fill('<img src=x onerror=alert(1)>echo');
    await click(page, 'Upload');
    await page.waitForFunction(() => /Uploaded echo\.wasm as module [0-9a-f]{64}/.test(document.querySelector('#status')?.textContent ?? ''), undefined, WAIT);
    // The tag is shown as the text it is.
    await page.waitForFunction(() => document.querySelector('#module-rows')?.textContent?.includes('<img src=x onerror=alert(1)>echo'), undefined, WAIT);
    assert.equal(await page.$$eval('#module-rows img', (i) => i.length), 0);

    await page.getByRole('button', { name: /^Launch module / }).click();
    const id = (await (
      await page.waitForFunction(() => /^Launched instance ([0-9a-f-]{36})/.exec(document.querySelector('#status')?.textContent ?? '')?.[1], undefined, WAIT)
    ).jsonValue()) as string;
    await page.waitForFunction((id) => document.querySelector('#terminal-id')?.textContent === id, id, WAIT);
    await page.getByLabel('Input', { exact: true }).fill('hello <b>bold</b> & more');
    // Sent at once: the console holds input until the websocket is connected.
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.waitForFunction(() => document.querySelector('#output')?.textContent?.includes('HELLO <B>BOLD</B> & MORE'), undefined, WAIT);
    assert.equal(await page.$$eval('#output b, #output B', (b) => b.length), 0);
    await waitRow(page, id, 'server', /^RUNNING$/);
    await click(page, `Kill instance ${id}`);
    await waitRow(page, id, 'server', /^KILLED/);
    await click(page, `Delete instance ${id}`);
    await waitGone(page, id);
  });

  it('suspends, resumes and snapshots the example, and moves it server → tab → server with its count going on', async () => {
    await click(page, 'Upload and launch the example (tally)');
    const instance = (await (
      await page.waitForFunction(() => /^Launched the example as instance ([0-9a-f-]{36})/.exec(document.querySelector('#status')?.textContent ?? '')?.[1], undefined, WAIT)
    ).jsonValue()) as string;
    let seen = await moreCounts(page, 2);

    await click(page, `Suspend instance ${instance}`);
    await waitRow(page, instance, 'server', /^SUSPENDED$/);
    await click(page, `Snapshot instance ${instance}`);
    await page.waitForFunction(() => /Snapshot of .* pinned as module [0-9a-f]{64}/.test(document.querySelector('#status')?.textContent ?? ''), undefined, WAIT);
    await click(page, `Resume instance ${instance}`);
    await waitRow(page, instance, 'server', /^RUNNING$/);
    await click(page, `Output instance ${instance}`);
    seen = await moreCounts(page, 0);
    const onServer = seen.at(-1)!;

    // Into the tab: the same instance id, now running in this page's worker.
    await click(page, `Move into this tab instance ${instance}`);
    await waitRow(page, instance, 'this tab', /^RUNNING$/);
    assert.deepEqual((await rows(page)).filter((r) => r.id === instance).map((r) => r.where), ['this tab']);
    const before = (await counts(page)).length;
    seen = await moreCounts(page, before + 2);
    const inTab = seen.slice(before);
    assert.ok(inTab[0]! > onServer, `the tab went on at ${inTab[0]} after the server's ${onServer}`);
    inTab.forEach((n, i) => i > 0 && assert.equal(n, inTab[i - 1]! + 1));
    // Input reaches the program in the tab too.
    await page.getByLabel('Input', { exact: true }).fill('+');
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.waitForFunction(() => /^tally \d+ \(\+100\)$/m.test(document.querySelector('#output')?.textContent ?? ''), undefined, WAIT);

    await page.screenshot({ path: (mkdirSync(ARTIFACTS, { recursive: true }), new URL('console.png', ARTIFACTS).pathname), fullPage: true });

    // And back to the server under the same id.
    const lastInTab = (await counts(page)).at(-1)!;
    await click(page, `Move to the server instance ${instance}`);
    await waitRow(page, instance, 'server', /^RUNNING$/);
    const beforeBack = (await counts(page)).length;
    const back = (await moreCounts(page, beforeBack)).slice(beforeBack);
    assert.ok(lastInTab >= inTab.at(-1)! + 100, `the input added 100 in the tab: ${inTab.at(-1)} → ${lastInTab}`);
    assert.ok(back[0]! > lastInTab, `the server went on at ${back[0]} after the tab's ${lastInTab}`);
    back.forEach((n, i) => i > 0 && assert.equal(n, back[i - 1]! + 1));
    assert.match(await statusText(page), /runs on the server again/);
    await click(page, `Kill instance ${instance}`);
    await waitRow(page, instance, 'server', /^KILLED/);
  });

  it('signs in with a pasted OpenSSH key and sees what that key owns', async () => {
    const privateKey = generateKeyPairSync('ed25519').privateKey;
    const key = identityFromPrivateKey(privateKey);
    const hash = createHash('sha256').update(echo).digest('hex');
    const pinned = await request(server, 'PUT', `/gate-0/module/sha256/${hash}?action=pin&module-tag=from-node`, { key, headers: { 'Content-Type': 'application/wasm' }, body: echo });
    assert.equal(pinned.status, 201, pinned.text);
    await click(page, 'Forget this key (sign out)');
    await page.waitForFunction(() => document.querySelector('#whoami')?.textContent === 'Not signed in.', undefined, WAIT);
    await page.getByLabel('Private key').fill('-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----');
    await click(page, 'Use this key');
    await page.waitForFunction(() => document.querySelector('#status.error')?.textContent?.includes('key'), undefined, WAIT);
    const openssh = sshpk.parsePrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' }), 'pem').toString('openssh');
    await page.getByLabel('Private key').fill(openssh);
    await click(page, 'Use this key');
    await page.waitForFunction(() => document.querySelector('#module-rows')?.textContent?.includes('from-node'), undefined, WAIT);
    assert.equal(await page.inputValue('#paste'), '');
  });

  it('the page saw no errors (no Content-Security-Policy violations either)', () => {
    assert.deepEqual(errors.filter((e) => !/status of 40[19]/.test(e)), []);
  });
});
