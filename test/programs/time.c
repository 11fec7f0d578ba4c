// time: clock_time_get behaviour (tests.md §2.5, abi.md §5.2).
//
// Imports: env.__wasi_clock_time_get.  Exports: memory, check.
// `check` returns 0 if all checks pass, else 1.  (The result of an entry
// function is ignored by Gate, so the test only detects traps; the value is
// still useful when the program is run under a debugger or other host.)

#include <gate.h>

__attribute__((export_name("check")))
int check(void)
{
	uint64_t t0, t;

	// Realtime is the host's wall clock: at least 2017-07-14 (1.5e18 ns).
	if (gate_clock_time(GATE_CLOCK_REALTIME, 1, &t0) != 0 || t0 < 1500000000000000000ULL)
		return 1;

	// It must advance: busy-wait until a reading differs.
	do {
		if (gate_clock_time(GATE_CLOCK_REALTIME, 1, &t) != 0)
			return 1;
	} while (t == t0);

	// Unknown clock ids are EINVAL (28).
	if (gate_clock_time(4, 1, &t) != GATE_EINVAL)
		return 1;
	if (gate_clock_time(0xffffffff, 1, &t) != GATE_EINVAL)
		return 1;

	return 0;
}
