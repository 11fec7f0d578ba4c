// traps: one entry function per way a program can stop (abi.md §7).
//
// Imports: env.__wasi_fd_write, env.__wasi_proc_exit.
// Exports (expected outcome):
//   memory
//   unreachable     UNREACHABLE                       (KILLED)
//   oob             MEMORY_ACCESS_OUT_OF_BOUNDS       (KILLED)
//   div_zero        INTEGER_DIVIDE_BY_ZERO            (KILLED)
//   int_overflow    INTEGER_OVERFLOW: INT_MIN / -1    (KILLED)
//   trunc_overflow  INTEGER_OVERFLOW: trapping f64→i32 conversion of 1e30
//   call_index      INDIRECT_CALL_INDEX_OUT_OF_BOUNDS (KILLED)
//   call_signature  INDIRECT_CALL_SIGNATURE_MISMATCH  (KILLED)
//   stack_exhaust   CALL_STACK_EXHAUSTED              (SUSPENDED)
//   exit0           proc_exit(0) → TERMINATED, result 0
//   exit1           proc_exit(7) → TERMINATED, result 1
//   ret1            returns 1: the value is ignored → result 0
//   grow            memory.grow beyond any limit → -1; logs "grow=-1\n"
//   debug_flood     writes 10 MiB to the debug log, then returns
//
// Volatile operands keep the compiler from evaluating the traps at compile
// time (or deleting them as undefined behaviour).

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

static volatile int32_t vi_zero = 0;
static volatile int32_t vi_one = 1;
static volatile int32_t vi_minus_one = -1;
static volatile int32_t vi_min = INT32_MIN;
static volatile double vd_huge = 1e30;
static volatile uint32_t vu_sink;
static volatile uintptr_t far_address = 0xfffffff0; // beyond the 2 GiB memory maximum
static volatile uintptr_t bad_table_index = 0x7fffffff;

EXPORT("unreachable")
void unreachable(void)
{
	__builtin_trap(); // the wasm `unreachable` instruction
}

EXPORT("oob")
void oob(void)
{
	vu_sink = *(volatile uint32_t *) far_address;
}

EXPORT("div_zero")
int32_t div_zero(void)
{
	return vi_one / vi_zero; // i32.div_s
}

EXPORT("int_overflow")
int32_t int_overflow(void)
{
	return vi_min / vi_minus_one; // i32.div_s overflows
}

EXPORT("trunc_overflow")
int32_t trunc_overflow(void)
{
	// The builtin is the trapping i32.trunc_f64_s even though the default
	// flags enable the saturating conversions for ordinary casts.
	return __builtin_wasm_trunc_s_i32_f64(vd_huge);
}

EXPORT("call_index")
void call_index(void)
{
	// call_indirect with a table index far beyond the table's size.
	void (*f)(void) = (void (*)(void)) bad_table_index;
	f();
}

static void takes_nothing(void)
{
	vu_sink = 1;
}

// Storing the function's address puts it in the table (and hides the
// target from the optimizer).
static void (*volatile takes_nothing_ptr)(void) = takes_nothing;

EXPORT("call_signature")
int32_t call_signature(void)
{
	// call_indirect with type (i32, i32) -> i32 on a () -> () function.
	int32_t (*f)(int32_t, int32_t) = (int32_t (*)(int32_t, int32_t)) takes_nothing_ptr;
	return f(1, 2);
}

// Unbounded non-tail recursion: the store after the call keeps it from
// becoming a loop, and nothing here uses the linear-memory shadow stack (so
// the wasm call stack, not memory, is what runs out).
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Winfinite-recursion"
__attribute__((noinline)) static uint32_t recurse(uint32_t n)
{
	vu_sink = n;
	uint32_t r = recurse(n + 1);
	vu_sink = r;
	return r + n;
}
#pragma clang diagnostic pop

EXPORT("stack_exhaust")
uint32_t stack_exhaust(void)
{
	return recurse(0);
}

EXPORT("exit0")
void exit0(void)
{
	gate_exit(0);
}

EXPORT("exit1")
void exit1(void)
{
	gate_exit(7); // any nonzero status means result 1
}

EXPORT("ret1")
int32_t ret1(void)
{
	return 1;
}

EXPORT("grow")
void grow(void)
{
	// 65536 more pages would exceed the 4 GiB address space, so this must
	// fail with -1 whatever the instance's memory limit is.
	long result = (long) __builtin_wasm_memory_grow(0, 65536);
	gate_debug("grow=");
	gate_debug_int(result);
	gate_debug("\n");
}

#define FLOOD_TOTAL (10 * 1024 * 1024)
#define FLOOD_CHUNK 65536
#define FLOOD_LINE 64

static char flood_buf[FLOOD_CHUNK];

EXPORT("debug_flood")
void debug_flood(void)
{
	// 64-byte lines: 63 characters and a newline.
	for (size_t i = 0; i < FLOOD_CHUNK; i++)
		flood_buf[i] = (i % FLOOD_LINE == FLOOD_LINE - 1) ? '\n' : (char) ('a' + (i / FLOOD_LINE) % 26);

	for (size_t sent = 0; sent < FLOOD_TOTAL; sent += FLOOD_CHUNK)
		gate_debug_data(flood_buf, FLOOD_CHUNK);
}
