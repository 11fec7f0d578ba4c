/**
 * The web console served by gate-server at /gate-0/console/ (docs/browser.md):
 * sign in with a key kept in the browser, manage modules and instances
 * through the documented API, watch and feed an instance's origin stream,
 * and move instances into this tab and back. Everything it shows that comes
 * from the server or a program goes in as text (textContent), never markup.
 */
import { ApiError, describeStatus, GateApi, type InstanceInfo, type ModuleInfo } from './api.js';
import { forgetKey, generateKey, importKey, loadKey, publicKeyLine, type ConsoleKey } from './key.js';
import { Tab } from './tab.js';

const $ = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the page has no #${id}`);
  return e as T;
};

const OUTPUT_MAX_CHARS = 100_000;
const REFRESH_MS = 3000;

let api: GateApi | undefined;
let tab: Tab | undefined;
let attached: { id: string; close(): void; send(data: Uint8Array): void } | undefined;
let lastRender = '';

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, attrs: Record<string, string> = {}): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function button(label: string, description: string, onClick: () => Promise<void>): HTMLButtonElement {
  const b = el('button', label, { type: 'button', 'aria-label': `${label} ${description}` });
  b.addEventListener('click', () => void busy(`${label}…`, onClick));
  return b;
}

function say(text: string, error = false): void {
  const s = $('status');
  s.textContent = text;
  s.className = error ? 'error' : '';
}

/** Runs an action, showing that it is under way and any error it ends with. */
async function busy(what: string, f: () => Promise<void>): Promise<void> {
  say(what);
  try {
    await f();
    if ($('status').textContent === what) say('');
  } catch (e) {
    say(e instanceof Error ? e.message : String(e), true);
  }
}

// ------------------------------------------------------------------ sign-in

async function signIn(key: ConsoleKey): Promise<void> {
  api = new GateApi(key);
  tab = new Tab(api);
  $<HTMLInputElement>('pubkey').value = publicKeyLine(key);
  $('whoami').textContent = `Signed in with key ${key.x.slice(0, 12)}…`;
  $('signin').hidden = true;
  for (const id of ['account', 'modules', 'instances']) $(id).hidden = false;
  await refresh();
}

function signOut(): void {
  attached?.close();
  attached = undefined;
  api = undefined;
  tab = undefined;
  lastRender = '';
  $('whoami').textContent = 'Not signed in.';
  $('signin').hidden = false;
  for (const id of ['account', 'modules', 'instances', 'terminal']) $(id).hidden = true;
}

// ------------------------------------------------------------------ lists

async function refresh(): Promise<void> {
  if (!api || !tab) return;
  const [modules, instances] = await Promise.all([api.modules(), api.instances()]);
  const here = tab.list();
  const signature = JSON.stringify([modules, instances, here.map((t) => [t.id, t.status])]);
  if (signature === lastRender) return;
  lastRender = signature;
  renderModules(modules);
  renderInstances(instances, here.map((t) => ({ instance: t.id, status: { ...t.status } })));
}

function renderModules(modules: ModuleInfo[]): void {
  const rows = modules.map((m) => {
    const tr = el('tr');
    const short = `${m.module.slice(0, 16)}…`;
    tr.append(el('td').appendChild(el('code', short, { title: m.module })).parentElement!);
    tr.append(el('td', (m.tags ?? []).join(', ')));
    const fn = el('input', undefined, { size: '10', 'aria-label': `function to launch in module ${short}`, placeholder: '_start' });
    tr.append(el('td').appendChild(fn).parentElement!);
    const actions = el('td');
    actions.append(
      button('Launch', `module ${short}`, async () => {
        const id = await api!.launch(m.module, { func: fn.value.trim() || undefined });
        say(`Launched instance ${id}.`);
        await refresh();
        await attach(id);
      }),
    );
    tr.append(actions);
    return tr;
  });
  $('module-rows').replaceChildren(...(rows.length ? rows : [emptyRow(4, 'No modules yet.')]));
}

function emptyRow(cols: number, text: string): HTMLTableRowElement {
  const tr = el('tr');
  tr.append(el('td', text, { colspan: String(cols) }));
  return tr;
}

function renderInstances(onServer: InstanceInfo[], inTab: InstanceInfo[]): void {
  const rows: HTMLTableRowElement[] = [];
  for (const [where, list] of [['server', onServer], ['this tab', inTab]] as const) {
    for (const i of list) {
      const tr = el('tr', undefined, { 'data-instance': i.instance });
      tr.append(el('td').appendChild(el('code', i.instance)).parentElement!);
      tr.append(el('td', where));
      tr.append(el('td', describeStatus(i.status)));
      tr.append(el('td').appendChild(el('code', i.module ? `${i.module.slice(0, 16)}…` : '', { title: i.module ?? '' })).parentElement!);
      const actions = el('td');
      const what = `instance ${i.instance}`;
      actions.append(button('Output', what, () => attach(i.instance)));
      if (where === 'server') {
        const act = (label: string, ...a: string[]): HTMLButtonElement =>
          button(label, what, async () => {
            await api!.act(i.instance, ...a);
            await refresh();
          });
        actions.append(
          act('Suspend', 'suspend', 'wait'),
          button('Resume', what, async () => {
            await api!.act(i.instance, 'resume');
            await refresh();
            // Suspending ended the output stream: watch the resumed program again.
            if (attached?.id === i.instance) await attach(i.instance, true);
          }),
          button('Snapshot', what, async () => {
            const hash = await api!.snapshot(i.instance);
            say(`Snapshot of ${i.instance} pinned as module ${hash}.`);
            await refresh();
          }),
          act('Kill', 'kill', 'wait'),
          act('Delete', 'delete'),
          button('Move into this tab', what, () => moveIn(i.instance)),
        );
      } else {
        actions.append(
          button('Move to the server', what, () => moveOut(i.instance)),
          button('Kill', what, async () => {
            await tab!.kill(i.instance);
            await refresh();
          }),
        );
      }
      tr.append(actions);
      rows.push(tr);
    }
  }
  $('instance-rows').replaceChildren(...(rows.length ? rows : [emptyRow(5, 'No instances.')]));
}

// ------------------------------------------------------------------ terminal

function note(text: string): void {
  append(el('span', `— ${text} —\n`, { class: 'note' }));
}

function append(node: Node): void {
  const out = $('output');
  const stick = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  out.append(node);
  if ((out.textContent ?? '').length > OUTPUT_MAX_CHARS) out.textContent = (out.textContent ?? '').slice(-OUTPUT_MAX_CHARS / 2);
  if (stick) out.scrollTop = out.scrollHeight;
}

/** Shows an instance's output (on the server through `io`, or in this tab) and sends it the input line. */
async function attach(id: string, keep = false): Promise<void> {
  attached?.close();
  attached = undefined;
  $('terminal').hidden = false;
  if (!keep) $('output').replaceChildren();
  $('terminal-id').textContent = id;
  const decoder = new TextDecoder();
  const onData = (chunk: Uint8Array): void => append(document.createTextNode(decoder.decode(chunk, { stream: true })));
  const local = tab!.get(id);
  if (local) {
    $('terminal-where').textContent = 'Running in this tab.';
    local.onData = onData;
    local.onEnd = (why) => note(why);
    attached = { id, send: (d) => local.send(d), close: () => (local.onData = () => undefined) };
    return;
  }
  $('terminal-where').textContent = 'Running on the server.';
  let conn: { send(d: Uint8Array): void; close(): void } | undefined;
  let closed = false;
  const early: Uint8Array[] = [];
  attached = { id, send: (d) => (conn ? conn.send(d) : early.push(d)), close: () => ((closed = true), conn?.close()) };
  conn = await api!.io(id, onData, (why) => {
    if (!closed) {
      note(why);
      void refresh().catch(() => undefined);
    }
  });
  if (closed) conn.close();
  for (const d of early) conn.send(d);
}

async function moveIn(id: string): Promise<void> {
  const watching = attached?.id === id;
  attached?.close();
  attached = undefined;
  await tab!.moveIn(id);
  say(`Instance ${id} runs in this tab now.`);
  if (watching) note('moved into this tab');
  await refresh();
  await attach(id, watching);
}

async function moveOut(id: string): Promise<void> {
  const watching = attached?.id === id;
  attached?.close();
  attached = undefined;
  await tab!.moveOut(id);
  say(`Instance ${id} runs on the server again.`);
  if (watching) note('moved to the server');
  await refresh();
  await attach(id, watching);
}

// ------------------------------------------------------------------ wiring

function wire(): void {
  $('generate').addEventListener('click', () => void busy('Generating a key…', async () => signIn(await generateKey())));
  $('paste-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const field = $<HTMLTextAreaElement>('paste');
    void busy('Importing the key…', async () => {
      const key = await importKey(field.value);
      field.value = '';
      await signIn(key);
    });
  });
  $('forget').addEventListener('click', () =>
    void busy('Forgetting the key…', async () => {
      await forgetKey();
      signOut();
    }),
  );
  $('refresh').addEventListener('click', () => void busy('Refreshing…', refresh));
  $('upload-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const file = $<HTMLInputElement>('upload-file').files?.[0];
    if (!file) return;
    void busy(`Uploading ${file.name}…`, async () => {
      const hash = await api!.upload(new Uint8Array(await file.arrayBuffer()), $<HTMLInputElement>('upload-tag').value.trim() || undefined);
      say(`Uploaded ${file.name} as module ${hash}.`);
      await refresh();
    });
  });
  $('example').addEventListener('click', () =>
    void busy('Launching the example…', async () => {
      const res = await fetch('tally.wasm');
      if (!res.ok) throw new ApiError(res.status, 'the example module is not available on this server');
      const hash = await api!.upload(new Uint8Array(await res.arrayBuffer()), 'tally');
      const id = await api!.launch(hash);
      say(`Launched the example as instance ${id}: move it into this tab and back, its count goes on.`);
      await refresh();
      await attach(id);
    }),
  );
  $('input-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const field = $<HTMLInputElement>('input');
    attached?.send(new TextEncoder().encode(`${field.value}\n`));
    field.value = '';
  });
  setInterval(() => {
    if (api && !document.hidden) void refresh().catch(() => undefined);
  }, REFRESH_MS);
}

wire();
void busy('Loading…', async () => {
  const key = await loadKey();
  if (key) await signIn(key);
});
