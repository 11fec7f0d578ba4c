# workerd configuration for bench/http.ts: one worker that instantiates
# greet.wasm (bench/programs/greet.wat) per request. The socket address is
# replaced on the command line (--socket-addr http=127.0.0.1:PORT); the
# benchmark copies this file, worker.mjs and greet.wasm into a temporary
# directory before starting workerd.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "main", worker = .greetWorker) ],
  sockets = [ (name = "http", address = "127.0.0.1:18787", http = (), service = "main") ],
);

const greetWorker :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    (name = "greet.wasm", wasm = embed "greet.wasm"),
  ],
  compatibilityDate = "2024-09-23",
);
