/**
 * gRPC services (docs/grpc.md) against a real service process written in
 * Python (examples/grpc/echo_service.py, grpcio from Debian), started through
 * a command (socketpair on fd 3) or dialled as a target (Unix socket).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { callPacket, Domain, infoPacket, packetCode, packetContent, packetDomain } from '../../src/abi/packet.js';
import { ConfigError } from '../../src/config/index.js';
import type { ServiceInstanceConfig } from '../../src/service/api.js';
import { GrpcInstanceClosedError, GrpcProtocolError, GrpcServiceError, GrpcStartError, parseGrpcConfig, startGrpcServices, type GrpcServices } from '../../src/service/grpc/index.js';
import { RECEIVE_BUDGET } from '../../src/service/grpc/client.js';
import { CALL_DEADLINE_MS, GateGrpcClient } from '../../src/service/grpc/protocol.js';
import { extensionRegistry } from '../../src/service/provider.js';
import { ServiceRestoreError } from '../../src/service/session.js';
import { makeContext, startSession, until } from './harness.js';

export const PYTHON = '/usr/bin/python3';
export const ECHO_SERVICE = fileURLToPath(new URL('../../../examples/grpc/echo_service.py', import.meta.url));
const log = pino({ level: process.env.GATE_TEST_LOG ?? 'silent' });
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function echoCommand(): GrpcServices extends never ? never : Promise<GrpcServices> {
  return startGrpcServices(parseGrpcConfig([`${PYTHON} ${ECHO_SERVICE}`], []), log);
}

/** Calls 0..count-1 (one content byte each) through a session bound to `echo` at code 3, checking the replies' order. */
async function echoCalls(services: GrpcServices, count: number): Promise<void> {
  const h = startSession(extensionRegistry(services.factories));
  h.bind('x', 'y', 'z', 'echo');
  for (let i = 0; i < count; i++) await h.session.handle(callPacket(3, Uint8Array.of(i)));
  await until(() => h.sent.length === count || h.errors.length > 0, 10_000, `${count} echoes`);
  assert.deepEqual(h.errors, []);
  assert.deepEqual(
    h.sent.map((p) => [packetCode(p), packetDomain(p), [...packetContent(p)]]),
    Array.from({ length: count }, (_, i) => [3, Domain.Call, [i]]),
  );
  const states = await h.session.shutdown(false);
  assert.deepEqual(states.map((s) => [s.name, s.buffer.length]), [['x', 0], ['y', 0], ['z', 0], ['echo', 0]]);
  assert.deepEqual(h.errors, []);
}

/** A direct instance of `echo` with recording callbacks. */
function directInstance(services: GrpcServices, snapshot?: Uint8Array) {
  const sent: Uint8Array[] = [];
  const failures: unknown[] = [];
  const config: ServiceInstanceConfig = { code: 1234, maxSendSize: 65536, context: makeContext(), send: (p) => sent.push(p), fail: (e) => failures.push(e) };
  const factory = services.factories.find((f) => f.name === 'echo')!;
  return { sent, failures, instance: factory.createInstance(config, snapshot) };
}

const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.length));
  return out;
};

describe('gRPC service started as a command (socketpair on fd 3)', () => {
  let services: GrpcServices;
  before(async () => {
    services = await echoCommand();
  });
  after(() => services.close());

  it('lists the services of Root.Init', () => {
    assert.deepEqual(services.factories.map((f) => [f.name, f.revision, f.streams]), [['echo', '1', true]]);
    assert.equal(services.factories[0]!.discoverable(makeContext({ principalId: undefined })), true);
  });

  it('echoes 100 CALLs in order, with the code the program discovered', () => echoCalls(services, 100));

  it('runs instances side by side', async () => {
    await Promise.all([echoCalls(services, 30), echoCalls(services, 30), echoCalls(services, 30)]);
  });

  it('restores an instance from a snapshot of 50 queued packets: they come first', async () => {
    const queued = concat(Array.from({ length: 50 }, (_, i) => callPacket(0, Uint8Array.of(i))));
    const { sent, failures, instance } = directInstance(services, queued);
    for (let i = 50; i < 100; i++) await instance.handle(callPacket(1234, Uint8Array.of(i)));
    await until(() => sent.length === 100 || failures.length > 0, 10_000, '100 echoes');
    assert.deepEqual(failures, []);
    assert.deepEqual(sent.map((p) => packetContent(p)[0]), Array.from({ length: 100 }, (_, i) => i));
    assert.equal((await instance.shutdown(true))?.length ?? 0, 0);
  });

  it('carries held replies through Suspend + Snapshot into the next Create', async () => {
    const first = directInstance(services);
    await first.instance.handle(infoPacket(0, text('hold')));
    for (let i = 0; i < 5; i++) await first.instance.handle(callPacket(0, Uint8Array.of(i)));
    const state = await first.instance.shutdown(true);
    assert.ok(state instanceof Uint8Array);
    assert.equal(state.length, 5 * 9);
    assert.deepEqual(first.sent, []);

    const second = directInstance(services, state);
    await second.instance.handle(callPacket(0, Uint8Array.of(5)));
    await until(() => second.sent.length === 6, 10_000, 'restored echoes');
    assert.deepEqual(second.sent.map((p) => packetContent(p)[0]), [0, 1, 2, 3, 4, 5]);
    await second.instance.shutdown(false);
    assert.deepEqual([...first.failures, ...second.failures], []);
  });

  it('restores through a session: the program waits for Create, and a restoration error fails the restore', async () => {
    const good = startSession(extensionRegistry(services.factories));
    good.session.restore([{ name: 'random', buffer: new Uint8Array(0) }, { name: 'echo', buffer: callPacket(0, Uint8Array.of(42)) }]);
    await good.session.restored();
    await until(() => good.sent.length === 1, 10_000, 'the queued echo');
    assert.deepEqual([packetCode(good.sent[0]!), [...packetContent(good.sent[0]!)]], [1, [42]]);
    await good.session.shutdown(false);

    const bad = startSession(extensionRegistry(services.factories));
    bad.session.restore([{ name: 'echo', buffer: Uint8Array.of(1, 2, 3) }]);
    await assert.rejects(bad.session.restored(), (e: Error) => e instanceof ServiceRestoreError && e.message === 'cannot restore the state of service "echo": gRPC service "echo" cannot restore the instance\'s state: snapshot contains a partial packet');
    assert.deepEqual(bad.errors, []);
  });

  it('refuses a second Shutdown: the instance says so, and so does the service', async () => {
    const { instance } = directInstance(services);
    await instance.handle(callPacket(0, Uint8Array.of(1)));
    await instance.shutdown(false);
    await assert.rejects(async () => instance.shutdown(false), GrpcInstanceClosedError);
    await assert.rejects(async () => instance.shutdown(true), GrpcInstanceClosedError);
  });

  it('gives the program a typed error when the service breaks the protocol', async () => {
    const { failures, instance } = directInstance(services);
    await instance.handle(infoPacket(0, text('short')));
    await until(() => failures.length > 0, 10_000, 'a failure');
    assert.ok(failures[0] instanceof GrpcProtocolError, String(failures[0]));
    assert.match((failures[0] as Error).message, /gRPC service "echo" broke the protocol: Receive gave a packet of 3 bytes/);
  });
});

describe('a misbehaving gRPC service', () => {
  let services: GrpcServices;
  before(async () => {
    services = await echoCommand();
  });
  after(() => services.close());

  it('that floods a program is held back once the program has been sent its budget, until the program speaks', async () => {
    const { sent, failures, instance } = directInstance(services);
    await instance.handle(infoPacket(0, text('flood')));
    await until(() => sent.length * 1032 >= RECEIVE_BUDGET, 10_000, 'a budget of packets');
    // The stream is paused: what arrives now is at most what grpc-js had already read.
    await new Promise((r) => setTimeout(r, 300));
    const held = sent.length;
    assert.ok(held < 4096, `all ${held} packets arrived`);
    assert.ok(held * 1032 < RECEIVE_BUDGET + 2 * 1024 * 1024, `${held} packets arrived past the budget`);
    // The program sends a packet: another budget's worth comes.
    await instance.handle(callPacket(0, Uint8Array.of(1)));
    await until(() => sent.length >= held + 900, 10_000, 'more packets');
    assert.deepEqual(failures, []);
    await instance.shutdown(false);
  });

  it('that never answers Handle fails it after the deadline, with a typed error', { timeout: 30_000 }, async () => {
    const { instance } = directInstance(services);
    const started = Date.now();
    await assert.rejects(
      async () => instance.handle(infoPacket(0, text('stall'))),
      (e: Error) => e instanceof GrpcServiceError && e.grpcCode === grpc.status.DEADLINE_EXCEEDED && e.message === `gRPC service "echo": did not answer Handle within ${CALL_DEADLINE_MS / 1000} s`,
    );
    assert.ok(Date.now() - started >= CALL_DEADLINE_MS - 100);
    // The service process is fine otherwise.
    await echoCalls(services, 5);
  });
});

describe('a gRPC service process that dies', () => {
  it('fails the instances using it with a clear error, and is restarted', async () => {
    const services = await echoCommand();
    try {
      const victim = directInstance(services);
      const bystander = directInstance(services);
      await victim.instance.handle(callPacket(0, Uint8Array.of(1)));
      await until(() => victim.sent.length === 1, 10_000, 'an echo');
      await assert.rejects(async () => victim.instance.handle(infoPacket(0, text('exit'))), GrpcServiceError);
      await until(() => victim.failures.length > 0 && bystander.failures.length > 0, 10_000, 'failures');
      for (const f of [victim.failures[0], bystander.failures[0]]) {
        assert.ok(f instanceof GrpcServiceError, String(f));
        assert.match(f.message, /^gRPC service "echo": the service went away: the process exited with code 3$/);
      }
      // While it is down the service is not discoverable; after the restart (1 s) it is, and works.
      const factory = services.factories[0]!;
      assert.equal(factory.discoverable(makeContext()), false);
      await until(() => factory.discoverable(makeContext()), 10_000, 'the restart');
      await echoCalls(services, 10);
    } finally {
      await services.close();
    }
  });
});

describe('gRPC service dialled as a target', () => {
  let dir: string;
  let child: ReturnType<typeof spawn>;
  let services: GrpcServices;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gate-grpc-test-'));
    const socket = join(dir, 'echo.sock');
    child = spawn(PYTHON, [ECHO_SERVICE, '--listen', `unix:${socket}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await until(() => existsSync(socket), 10_000, 'the service socket');
    services = await startGrpcServices(parseGrpcConfig([], [`unix:${socket} insecure`, 'unix:/nonexistent/gate.sock insecure optional']), log);
  });
  after(async () => {
    await services.close();
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    // It must stop on SIGTERM; SIGKILL keeps a broken example from hanging the test (it then fails).
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
    assert.equal(child.signalCode, null, 'the service did not exit on SIGTERM');
    assert.equal(child.exitCode, 0);
  });

  it('echoes 100 CALLs in order; the optional target that cannot be reached is left out', async () => {
    assert.deepEqual(services.factories.map((f) => f.name), ['echo']);
    await echoCalls(services, 100);
  });

  it('answers a second Shutdown of the same id with NOT_FOUND (protocol level)', async () => {
    const client = new GateGrpcClient(`unix:${join(dir, 'echo.sock')}`, grpc.credentials.createInsecure());
    try {
      const r = await client.create('echo', { maxSendSize: 65536, processKey: Buffer.alloc(16), principalId: '', instanceUuid: Buffer.alloc(16) }, undefined);
      assert.equal(r.restorationError, '');
      await client.shutdown(r.id);
      await assert.rejects(client.shutdown(r.id), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
      const bad = await client.create('echo', { maxSendSize: 65536, processKey: Buffer.alloc(0), principalId: '', instanceUuid: Buffer.alloc(0) }, Uint8Array.of(1, 2, 3));
      assert.equal(bad.restorationError, 'snapshot contains a partial packet');
    } finally {
      client.close();
    }
  });
});

describe('gRPC configuration', () => {
  it('reads commands as the original does: "[@path] argv0 args..."', () => {
    assert.deepEqual(parseGrpcConfig(['/usr/bin/python3  /x.py -v', '@/usr/bin/python3 echo-service /x.py'], ['localhost:1', 'unix:/s insecure optional']), {
      commands: [
        { path: '/usr/bin/python3', args: ['/usr/bin/python3', '/x.py', '-v'] },
        { path: '/usr/bin/python3', args: ['echo-service', '/x.py'] },
      ],
      targets: [
        { address: 'localhost:1', insecure: false, optional: false },
        { address: 'unix:/s', insecure: true, optional: true },
      ],
    });
    assert.throws(() => parseGrpcConfig(['@/usr/bin/python3'], []), /service\.grpc\.commands\[0\] must be/);
  });

  it('names the key of a malformed entry', () => {
    assert.throws(() => parseGrpcConfig(['  '], []), (e: Error) => e instanceof ConfigError && e.message.startsWith('service.grpc.commands[0] must be'));
    assert.throws(() => parseGrpcConfig([], ['localhost:1 insecure', 'localhost:2 secure']), (e: Error) => e instanceof ConfigError && e.message === 'service.grpc.targets[1]: unknown dial option "secure" (use insecure, optional)');
  });

  it('names the entry that cannot be started or reached', async () => {
    await assert.rejects(startGrpcServices(parseGrpcConfig(['/nonexistent/service --flag'], []), log), (e: Error) => e instanceof GrpcStartError && /^service\.grpc\.commands\[0\]: command "\/nonexistent\/service --flag"/.test(e.message));
    await assert.rejects(startGrpcServices(parseGrpcConfig([], ['unix:/nonexistent/gate.sock insecure']), log), (e: Error) => e instanceof GrpcStartError && /^service\.grpc\.targets\[0\]: cannot use target unix:\/nonexistent\/gate\.sock: Root\.Init failed/.test(e.message));
  });
});
