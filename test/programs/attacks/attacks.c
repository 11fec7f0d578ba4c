// attacks: hostile programs for the sandbox and resource-control tests
// (test/sandbox/attacks.test.ts). The other attacks of the suite reuse
// traps.c (deep recursion, debug flood), randomseed.c (random_get abuse) and
// violations.c (packet flood, malformed and oversized packets, writing
// without flow credit, rediscovery).
//
// Imports: env.__wasi_fd_write, env.__wasi_random_get.
// Exports (expected outcome):
//   memory (1 page)
//   spin           an endless loop: SUSPENDED once its CPU budget is used
//                  (suspend-anywhere), killed INTERNAL under io-suspend
//   membomb        grows memory one page at a time, touching each, until
//                  memory.grow returns -1; logs "pages=N\n", then traps
//                  like a failed malloc: KILLED UNREACHABLE
//   debug_forever  writes to the debug log without end: stopped by its CPU
//                  budget or a kill; the executor keeps serving others
//   random_forever calls random_get without end: the 16-byte pool runs
//                  dry, SUSPENDED ABI_DEFICIENCY

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

static volatile uint64_t counter;

EXPORT("spin")
void spin(void)
{
	for (;;)
		counter++;
}

EXPORT("membomb")
void membomb(void)
{
	for (;;) {
		int32_t old = __builtin_wasm_memory_grow(0, 1);
		if (old < 0)
			break;
		((volatile uint8_t *) 0)[(uint32_t) old * 65536 + 4096] = 1;
	}
	gate_debug("pages=");
	gate_debug_uint(__builtin_wasm_memory_size(0));
	gate_debug("\n");
	__builtin_trap();
}

static char line[1024];

EXPORT("debug_forever")
void debug_forever(void)
{
	for (unsigned i = 0; i < sizeof line - 1; i++)
		line[i] = 'x';
	line[sizeof line - 1] = '\n';
	for (;;)
		gate_debug_data(line, sizeof line);
}

EXPORT("random_forever")
void random_forever(void)
{
	uint8_t b;
	for (;;)
		gate_random_get(&b, 1);
}
