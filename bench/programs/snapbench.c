// cflags: -Wl,--initial-memory=65536 -Wl,-z,stack-size=8192
/*
 * snapbench: programs for the snapshot/restore benchmark (bench/snapshot.ts).
 * A Gate program with a one-page memory. Both entry functions compute in a
 * loop with a cheap io call every ~0.1 ms and print "resumed" on the debug
 * log as soon as they run again after a restore — the first sign of
 * execution that the benchmark times.
 */
#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

/* A zero-length io call; reports (flags bit 0) whether the instance was
 * started or resumed since the last call. */
static bool resumed_since_last(void)
{
	uint64_t flags = 0;
	gate_io(NULL, 0, NULL, NULL, 0, NULL, 0, &flags);
	return (flags & 1) != 0;
}

static volatile uint32_t sink;

static void spin(uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		sink += i;
}

/* One page of memory, pure computation between the io calls. */
EXPORT("small")
void small(void)
{
	resumed_since_last();
	gate_debug("running\n");
	for (;;) {
		spin(20000);
		if (resumed_since_last())
			gate_debug("resumed\n");
	}
}

#define BIG_PAGES 1024 /* 64 MiB */

static uint32_t pattern(uint32_t word, uint32_t seed)
{
	uint32_t x = word * 2654435761u + seed;
	return x ^ (x >> 13);
}

/* Grows to `pages` and fills all of it with a dense pseudo-random pattern
 * (no zero blocks: the largest snapshot that size gives), then checks
 * random words in a loop; traps (unreachable) if a restore lost a byte. */
static void dense(uint32_t pages, const char *name)
{
	uint32_t have = __builtin_wasm_memory_size(0);
	if (have < pages && __builtin_wasm_memory_grow(0, pages - have) < 0) {
		gate_debug(name);
		gate_debug(": cannot grow\n");
		gate_exit(1);
	}
	extern char __heap_base;
	uintptr_t base = ((uintptr_t)&__heap_base + 7) & ~(uintptr_t)7;
	uint32_t *words = (uint32_t *)base;
	uint32_t count = (uint32_t)((pages * 65536u - base) / 4);
	for (uint32_t i = 0; i < count; i++)
		words[i] = pattern(i, 7) | 1;
	resumed_since_last();
	gate_debug("running\n");
	for (uint32_t iter = 0;; iter++) {
		for (uint32_t k = 0; k < 1024; k++) {
			uint32_t i = pattern(iter * 1024 + k, 99) % count;
			if (words[i] != (pattern(i, 7) | 1))
				__builtin_trap();
		}
		spin(10000);
		if (resumed_since_last())
			gate_debug("resumed\n");
	}
}

/* 64 MiB, dense. */
EXPORT("big")
void big(void)
{
	dense(BIG_PAGES, "big");
}

/* 1 MiB, dense. */
EXPORT("medium")
void medium(void)
{
	dense(16, "medium");
}
