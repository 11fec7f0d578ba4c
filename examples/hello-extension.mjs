// hello-extension: a Gate extension adding the service "example.net/hello",
// which answers a call "NAME" with "GREETING, NAME (N)\n", N counting the
// calls of the program instance (kept across suspend and resume).
//
// Load it in gate-server or gate-daemon with
//
//     service.extensions = ["./hello-extension.mjs"]   # relative to this configuration file
//     service.hello.greeting = "Hi"                    # optional (default "Hello")
//
// and run examples/hello-service.wasm, which uses it. The default export is a
// function given Gate's extension API, so this file needs no `import` and can
// live anywhere (a module that imports from the gate-ts package may instead
// `export default defineExtension({...})`).

export default (gate) =>
  gate.defineExtension({
    name: 'hello', // its settings are service.hello.*
    settings: {
      greeting: { type: 'string', help: 'example.net/hello: the greeting (default "Hello")' },
    },
    services(config) {
      const greeting = config.greeting ?? 'Hello';
      if (greeting.length > 100) throw new gate.ExtensionConfigError('service.hello.greeting must be at most 100 characters');
      return gate.defineService({
        name: 'example.net/hello',
        revision: '1',
        create(instance, snapshot) {
          // The state is the call count: 4 bytes, little-endian.
          let count = snapshot?.length === 4 ? new DataView(snapshot.buffer, snapshot.byteOffset).getUint32(0, true) : 0;
          const state = () => {
            const b = new Uint8Array(4);
            new DataView(b.buffer).setUint32(0, count, true);
            return b;
          };
          return {
            handle(packet) {
              if (gate.packetDomain(packet) !== gate.Domain.Call) return; // INFO: ignored
              const name = new TextDecoder().decode(gate.packetContent(packet)).slice(0, 1000);
              count++;
              const reply = new TextEncoder().encode(`${greeting}, ${name || 'stranger'} (${count})\n`);
              instance.send(gate.callPacket(instance.code, reply));
            },
            checkpoint: state,
            shutdown: (suspend) => (suspend ? state() : undefined),
          };
        },
      });
    },
  });
