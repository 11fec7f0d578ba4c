// cflags: -g -O1 -Wl,--export=counter -Wl,--export=message
// debuggee: a program to debug (docs/debugging.md), built with DWARF (-g).
//
// Exports: memory, counter and message (their addresses, as globals), run,
// crash.
//
// crash() recurses 5 frames deep through fall() and traps (unreachable) in
// explode().
//
// run() recurses 5 frames deep through descend(), adds each depth to
// counter on the way, and then blocks in gate_io (waiting for input that
// never comes), so that a suspended instance has a known stack: run →
// descend(5) → … → descend(1) → descend(0) → wait_for_input.

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

volatile uint32_t counter;
char message[32] = "gate debugger test";

__attribute__((noinline)) static void wait_for_input(void)
{
	gate_io(NULL, 0, NULL, NULL, 0, NULL, GATE_IO_WAIT, NULL);
}

__attribute__((noinline)) static uint32_t descend(uint32_t depth)
{
	counter += depth;
	if (depth == 0) {
		wait_for_input();
		return counter;
	}
	return descend(depth - 1) + depth;
}

EXPORT("run")
void run(void)
{
	for (;;)
		descend(5);
}

__attribute__((noinline)) static void explode(uint32_t depth)
{
	counter = depth;
	__builtin_trap();
}

__attribute__((noinline)) static void fall(uint32_t depth)
{
	if (depth == 0)
		explode(depth);
	else
		fall(depth - 1);
	counter += depth;
}

EXPORT("crash")
void crash(void)
{
	fall(5);
}
