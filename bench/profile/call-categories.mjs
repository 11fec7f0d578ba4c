#!/usr/bin/env node
// Where one call's time goes in a V8 CPU profile (node --cpu-prof) of
// gate-server or of its executor process, taken during a steady HTTP load of
// one kind of call (bench/call-breakdown.md says how). Usage:
//
//   node bench/profile/call-categories.mjs PROFILE CALLS_PER_SECOND WINDOW_SECONDS
//
// Only samples in the WINDOW_SECONDS that end 1 s before the profile ends
// count (start-up and shutdown are left out); times are divided by
// CALLS_PER_SECOND × WINDOW_SECONDS. A sample belongs to the first category
// whose test matches: first by what its stack contains (instance set-up,
// program run, SQLite, token), else by its innermost frame that matches.
// Write syscalls include the time the writer was preempted by the process
// it woke (on a busy machine most of it).
import { readFileSync } from 'node:fs';

const [file, rps, windowSec] = process.argv.slice(2);
if (!file || !(Number(rps) > 0) || !(Number(windowSec) > 0)) {
  console.error('usage: call-categories.mjs PROFILE CALLS_PER_SECOND WINDOW_SECONDS');
  process.exit(2);
}
const calls = Number(rps) * Number(windowSec);
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const hi = p.endTime - 1e6;
const lo = hi - Number(windowSec) * 1e6;
const time = new Map();
let ts = p.startTime;
for (let i = 0; i < p.samples.length; i++) {
  ts += p.timeDeltas[i] ?? 0;
  if (ts >= lo && ts <= hi) time.set(p.samples[i], (time.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
}
const frame = (n) => `${n.callFrame.functionName} ${n.callFrame.url}`;

/** By anything on the stack, in this order. */
const bySubtree = [
  ['instance set-up (executor)', /^createInstance .*executor-core\.js/],
  ['program run: wasm, ABI, scheduler (executor)', /^(runSlice|turn) /],
  ['SQLite: pin lookup, stop path', /store\/sqlite\.js|better-sqlite3/],
  ['token verification', /auth\/token\.js/],
];
/** By the innermost matching frame. */
const byFrame = [
  ['executor messages: encode, decode, checks', /framing\.js|protocol\.js|child-executor\.js|remote-executor\.js|executor-main\.js/],
  ['services: origin, discovery, session', /src\/service\//],
  ['launch and stop bookkeeping', /runtime\/runtime\.js|running-instance\.js|server\/instances\.js|server\/modules\.js/],
  ['routing and request handling', /server\/(api|index|routes|query|http|stream)\.js/],
  ['node HTTP: parse, respond', /_http_|parserOn/],
];
const totals = new Map([
  ['write syscalls: executor pipe', 0],
  ['write syscalls: HTTP socket', 0],
  ...bySubtree.map(([k]) => [k, 0]),
  ...byFrame.map(([k]) => [k, 0]),
  ['GC', 0],
  ['other', 0],
  ['idle', 0],
]);
let total = 0;
for (const [id, t] of time) {
  total += t;
  const stack = [];
  for (let x = id; x !== undefined; x = parent.get(x)) stack.push(frame(byId.get(x)));
  let cat;
  if (stack[0] === '(idle) ') cat = 'idle';
  else if (stack[0].startsWith('(garbage collector)')) cat = 'GC';
  else if (/^(writev|writeBuffer|writeUtf8String|writeLatin1String) $/.test(stack[0])) {
    cat = stack.some((f) => /framing\.js|executor-main\.js/.test(f)) ? 'write syscalls: executor pipe' : 'write syscalls: HTTP socket';
  } else {
    cat = bySubtree.find(([, re]) => stack.some((f) => re.test(f)))?.[0];
    for (let i = 0; cat === undefined && i < stack.length; i++) cat = byFrame.find(([, re]) => re.test(stack[i]))?.[0];
    cat ??= 'other';
  }
  totals.set(cat, totals.get(cat) + t);
}
console.log(`${(total / calls).toFixed(0)}\tµs per call in all (${calls.toFixed(0)} calls)`);
for (const [k, t] of totals) if (t > 0) console.log(`${(t / calls).toFixed(0)}\t${k}`);
