// cflags: -Wl,--initial-memory=196608
//
// memreuse: what an instance finds in memory it did not write. `dirty`
// overwrites its initialised and zero-initialised data and all memory past
// the heap base; `check` says "clean" if its data has its initial values and
// the rest is zeros (whatever ran in this memory object before), else what
// differs.
//
// Imports: env.__wasi_fd_write.
// Exports: memory (3 pages), dirty, grow, check.

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

extern unsigned char __heap_base;

static volatile int initialised = 0x5a5a1234;
static volatile unsigned char zeroed[4096];

static unsigned char *memory_end(void)
{
	return (unsigned char *)(__builtin_wasm_memory_size(0) * 65536);
}

EXPORT("dirty")
int dirty(void)
{
	initialised = -1;
	for (unsigned i = 0; i < sizeof zeroed; i++)
		zeroed[i] = 0xaa;
	for (volatile unsigned char *p = &__heap_base; p < memory_end(); p++)
		*p = 0xaa;
	gate_debug("dirty");
	return 0;
}

// Grows its memory by a page, then dirties it all: a memory of another size
// than its instance started with is never handed to another instance.
EXPORT("grow")
int grow(void)
{
	if (__builtin_wasm_memory_grow(0, 1) < 0) {
		gate_debug("memory.grow failed");
		return 1;
	}
	return dirty();
}

EXPORT("check")
int check(void)
{
	int bad = 0;
	if (initialised != 0x5a5a1234) {
		gate_debug("initialised data changed; ");
		bad = 1;
	}
	for (unsigned i = 0; i < sizeof zeroed; i++) {
		if (zeroed[i] != 0) {
			gate_debug("zero-initialised data is not zero; ");
			bad = 1;
			break;
		}
	}
	for (volatile unsigned char *p = &__heap_base; p < memory_end(); p++) {
		if (*p != 0) {
			gate_debug("memory past the heap base is not zero at ");
			gate_debug_hex((uint64_t)(uintptr_t)p);
			gate_debug("; ");
			bad = 1;
			break;
		}
	}
	if (!bad)
		gate_debug("clean");
	return bad;
}
