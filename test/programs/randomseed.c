// randomseed: the 16-byte random pool of random_get (tests.md §2.4,
// abi.md §5.4).
//
// Imports: env.__wasi_random_get, env.__wasi_fd_write.
// Exports: memory, dump, toomuch, toomuch2.

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

// Prints the 16 random bytes as two u64 in hex separated by one space, with
// no newline (the runtime appends one to the log).  Every run must differ.
EXPORT("dump")
int dump(void)
{
	uint64_t seed[2];
	if (gate_random_get(seed, sizeof seed) != 0) {
		gate_debug("random_get failed\n");
		return 1;
	}
	gate_debug_hex(seed[0]);
	gate_debug(" ");
	gate_debug_hex(seed[1]);
	return 0;
}

// Asking for 17 bytes exceeds the pool: the call suspends the program with
// ABI_DEFICIENCY, so the log is exactly "ping" (+ the appended newline).
EXPORT("toomuch")
int toomuch(void)
{
	uint8_t buf[17];
	gate_debug("ping");
	gate_random_get(buf, sizeof buf);
	gate_debug("pong"); // never reached
	return 1;
}

// 10 + 10 bytes: the second call exhausts the pool.
EXPORT("toomuch2")
int toomuch2(void)
{
	uint8_t buf[10];
	gate_random_get(buf, sizeof buf);
	gate_debug("ping");
	gate_random_get(buf, sizeof buf);
	gate_debug("pong"); // never reached
	return 1;
}
