// clock: writes the current time to the debug log, then sends "tick\n" to
// the client at the origin three times, 200 ms apart.
//
//     ./bin/gate call -d examples/clock.wasm     # -d shows the debug log
//
// It shows the clocks and a blocking call: the program sleeps in WASI
// poll_oneoff, which gate.h does not wrap, so it is declared here.  The
// stream to the client is handled by gate-service.h (echo.c shows the same
// protocol packet by packet).

#include <gate-service.h>

// A WASI poll_oneoff clock subscription (48 bytes).
struct clock_subscription {
	uint64_t userdata;
	uint8_t tag; // 0 = clock
	uint32_t clock_id __attribute__((aligned(8)));
	uint64_t timeout;   // nanoseconds
	uint64_t precision; // nanoseconds
	uint16_t flags;     // 0 = relative timeout, 1 = absolute
};

_Static_assert(sizeof(struct clock_subscription) == 48, "subscription layout");

__attribute__((import_module("env"), import_name("__wasi_poll_oneoff")))
uint16_t wasi_poll_oneoff(const struct clock_subscription *in, void *events, size_t n, size_t *nevents);

GATE_NORETURN_ static void fail(const char *msg)
{
	gate_debug("clock: ", msg, "\n");
	gate_exit(1);
}

// Blocks for `ms` milliseconds, using a relative timeout on the monotonic
// clock.  The wait may end early (e.g. around a suspension), so we loop until
// the clock says the time has passed.  The event written to `event` is not
// inspected: like the original runtime, Gate never reports relative clock
// events as having fired.
static void sleep_ms(uint64_t ms)
{
	uint64_t deadline = gate_clock_monotonic() + ms * 1000000;
	for (uint64_t t; (t = gate_clock_monotonic()) < deadline;) {
		struct clock_subscription sub = {.clock_id = GATE_CLOCK_MONOTONIC, .timeout = deadline - t, .precision = 1000000};
		uint64_t event[4]; // 32 bytes
		size_t nevents;
		if (wasi_poll_oneoff(&sub, event, 1, &nevents) != GATE_ESUCCESS)
			fail("poll_oneoff failed");
	}
}

__attribute__((export_name("_start")))
void start(void)
{
	gate_debug("clock: realtime ", gate_clock_realtime() / 1000000000, " s since the epoch\n");
	gate_debug("clock: monotonic ", gate_clock_monotonic(), " ns\n");

	// Wait for the client (discovers origin, accepts a stream, closes its
	// input side: we read nothing).
	struct gate_origin client;
	if (gate_origin_accept(&client) != 0)
		fail("origin service is not available");

	// Tick; gate_origin_write waits for origin's FLOW credit when needed.
	for (int i = 0; i < 3; i++) {
		if (i > 0)
			sleep_ms(200);
		if (gate_origin_print(&client, "tick\n") != 0)
			fail("the client stopped receiving");
	}

	// Close our send side and wait until the client has received everything.
	if (gate_origin_close(&client) != 0)
		fail("received a packet with an invalid size");
}
