/*
 * Programs for snapshot and restore tests: each runs until it is suspended,
 * and reports on the debug log what a restore must preserve.
 */
#include <gate.h>

/* A zero-length io call: a cheap preemption point that also reports (flags
 * bit 0) whether the instance was started or resumed since the last call. */
static bool resumed_since_last(void)
{
	uint64_t flags = 0;
	gate_io(NULL, 0, NULL, NULL, 0, NULL, 0, &flags);
	return (flags & 1) != 0;
}

/* Busy work the optimizer cannot remove. */
static volatile uint32_t sink;

static void spin(uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		sink += i;
}

/* Prints the monotonic clock after every resume: it must continue from
 * where it stopped (not restart near 1 s, not jump by the time spent
 * suspended). Also prints it once per million spins. */
__attribute__((export_name("clock"))) void clock(void)
{
	resumed_since_last(); /* the first call reports the start */
	for (uint32_t round = 0;; round++) {
		uint64_t t = 0;
		gate_clock_time(1, 1, &t);
		if (resumed_since_last()) {
			/* Read again: the first reading may predate the suspension. */
			gate_clock_time(1, 1, &t);
			gate_debug("resumed at ");
			gate_debug_uint(t);
			gate_debug("\n");
		}
		if (round % 64 == 0) {
			gate_debug("clock ");
			gate_debug_uint(t);
			gate_debug("\n");
		}
		spin(100000);
	}
}

#define BIG_PAGES 1024 /* 64 MiB */

static uint32_t pattern(uint32_t word, uint32_t seed)
{
	uint32_t x = word * 2654435761u + seed;
	return x ^ (x >> 13);
}

/* Grows memory to 64 MiB, fills it with a pattern, then verifies random
 * parts of it forever; a restore that loses or moves any byte makes it
 * trap (unreachable) instead of staying suspendable. */
__attribute__((export_name("bigmem"))) void bigmem(void)
{
	uint32_t have = __builtin_wasm_memory_size(0);
	if (have < BIG_PAGES && __builtin_wasm_memory_grow(0, BIG_PAGES - have) < 0) {
		gate_debug("bigmem: cannot grow\n");
		gate_exit(1);
	}
	/* The fill starts past the program's data and C stack. */
	extern char __heap_base;
	uintptr_t base = ((uintptr_t)&__heap_base + 7) & ~(uintptr_t)7;
	uint32_t *words = (uint32_t *)base;
	uint32_t count = (uint32_t)((BIG_PAGES * 65536u - base) / 4);
	for (uint32_t i = 0; i < count; i++)
		words[i] = pattern(i, 7);
	gate_debug("bigmem filled\n");
	for (uint32_t iter = 0;; iter++) {
		for (uint32_t k = 0; k < 4096; k++) {
			uint32_t i = pattern(iter * 4096 + k, 99) % count;
			if (words[i] != pattern(i, 7))
				__builtin_trap();
		}
		if (resumed_since_last()) {
			/* Check everything once after each resume. */
			for (uint32_t i = 0; i < count; i++)
				if (words[i] != pattern(i, 7))
					__builtin_trap();
			gate_debug("bigmem verified\n");
		}
	}
}

/* Waits for a resume, then prints 8 fresh random bytes: two instances
 * restored from one snapshot must print different values. Then loops
 * counting in a local and in memory, printing both after each resume. */
static volatile uint64_t counter_in_memory;

__attribute__((export_name("clone"))) void clone(void)
{
	uint64_t local = 0;
	resumed_since_last();
	for (;;) {
		local++;
		counter_in_memory++;
		if (resumed_since_last()) {
			uint64_t r = 0;
			gate_random_get(&r, sizeof r);
			gate_debug("resumed random ");
			gate_debug_hex(r);
			gate_debug(" local ");
			gate_debug_uint(local);
			gate_debug(" memory ");
			gate_debug_uint(counter_in_memory);
			gate_debug("\n");
			if (local != counter_in_memory)
				__builtin_trap();
		}
		spin(10000);
	}
}

/* Discovers origin (reading the reply), waits for a resume, then prints the
 * first packet it receives: after a restore it must be the INFO-domain
 * service-state packet (abi.md §9.3). */
static uint8_t packet_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));

__attribute__((export_name("info"))) void info(void)
{
	static const char names[] = "\x06origin";
	static uint8_t req[24] __attribute__((aligned(8)));
	struct gate_packet *header = (struct gate_packet *) req;
	header->size = GATE_PACKET_HEADER_SIZE + 2 + sizeof names - 1;
	header->code = GATE_PACKET_CODE_SERVICES;
	header->domain = GATE_PACKET_DOMAIN_CALL;
	header->index = 0;
	req[8] = 1; /* count */
	req[9] = 0;
	for (unsigned i = 0; i < sizeof names - 1; i++)
		req[10 + i] = (uint8_t) names[i];
	if (gate_send_packet(header) != 0)
		gate_exit(1);
	struct gate_packet *reply = gate_recv_packet(packet_buf);
	if (reply == NULL || reply->code != GATE_PACKET_CODE_SERVICES)
		gate_exit(1);
	gate_debug("discovered\n");
	resumed_since_last();
	while (!resumed_since_last())
		spin(1000);
	struct gate_packet *p = gate_recv_packet(packet_buf);
	if (p == NULL)
		gate_exit(1);
	const uint8_t *content = (const uint8_t *) p + GATE_PACKET_HEADER_SIZE;
	gate_debug("first packet code ");
	gate_debug_int(p->code);
	gate_debug(" domain ");
	gate_debug_uint(gate_packet_domain(p));
	gate_debug(" count ");
	gate_debug_uint(content[0] | (content[1] << 8));
	gate_debug(" state ");
	gate_debug_uint(content[2]);
	gate_debug("\n");
}
