// clock: writes the current time to the debug log, then sends "tick\n" to
// the client at the origin three times, 200 ms apart.
//
//     ./bin/gate call -d examples/clock.wasm     # -d shows the debug log
//
// It shows the clocks and a blocking call: the program sleeps in WASI
// poll_oneoff, which gate.h does not wrap, so it is declared here.  The
// stream protocol is the same as in echo.c, without the input direction.

#include <gate.h>

#define ORIGIN 0 // service code = position in our discovery request

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

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));

static int32_t stream; // stream id given by origin
static int64_t credit; // bytes origin lets us send (its FLOW packets)
static bool closed;    // origin sent FLOW {stream, 0}

GATE_NORETURN_ static void fail(const char *msg)
{
	gate_debug("clock: ");
	gate_debug(msg);
	gate_debug("\n");
	gate_exit(1);
}

static void send_packet(const struct gate_packet *p)
{
	if (gate_send_packet(p) != 0)
		fail("bad packet size");
}

// Receives the next packet of origin (skipping other codes); FLOW packets
// update the send credit.  As we never grant credit for input, the only DATA
// packet that may arrive is the empty one that ends it.
static struct gate_packet *recv_origin(void)
{
	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			fail("received a packet with an invalid size");
		if (p->code != ORIGIN)
			continue;
		if (gate_packet_domain(p) == GATE_PACKET_DOMAIN_FLOW) {
			const struct gate_flow_packet *f = (const void *) p;
			for (uint32_t i = 0; i < (p->size - GATE_PACKET_HEADER_SIZE) / sizeof(struct gate_flow); i++) {
				if (f->flows[i].id != stream)
					fail("FLOW for an unknown stream");
				if (f->flows[i].value > 0)
					credit += f->flows[i].value;
				else if (f->flows[i].value == 0)
					closed = true;
			}
		} else if (gate_packet_domain(p) == GATE_PACKET_DOMAIN_DATA && p->size != GATE_DATA_HEADER_SIZE) {
			fail("unexpected DATA packet");
		}
		return p;
	}
}

// Sends one DATA packet with a short text (an empty one closes our send
// side), first waiting for origin's FLOW credit if needed.
static void send_text(const char *text)
{
	union {
		struct gate_data_packet p;
		uint8_t bytes[GATE_DATA_HEADER_SIZE + 64];
	} out = {.p = {
		.header = {.size = GATE_DATA_HEADER_SIZE, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_DATA},
		.id = stream,
	}};
	uint32_t n = 0;
	for (; text[n] != '\0'; n++) {
		if (n == 64)
			fail("text too long");
		out.p.data[n] = text[n];
	}
	out.p.header.size += n;
	while (credit < n || closed) {
		if (closed)
			fail("the client stopped receiving");
		recv_origin();
	}
	send_packet(&out.p.header);
	credit -= n;
}

static uint64_t now(uint32_t clock_id)
{
	uint64_t t; // precision 1 ns: the finest the instance allows
	if (gate_clock_time(clock_id, 1, &t) != GATE_ESUCCESS)
		fail("clock_time_get failed");
	return t;
}

// Blocks for `ms` milliseconds, using a relative timeout on the monotonic
// clock.  The wait may end early (e.g. around a suspension), so we loop until
// the clock says the time has passed.  The event written to `event` is not
// inspected: like the original runtime, Gate never reports relative clock
// events as having fired.
static void sleep_ms(uint64_t ms)
{
	uint64_t deadline = now(GATE_CLOCK_MONOTONIC) + ms * 1000000;
	for (uint64_t t; (t = now(GATE_CLOCK_MONOTONIC)) < deadline;) {
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
	gate_debug("clock: realtime ");
	gate_debug_uint(now(GATE_CLOCK_REALTIME) / 1000000000);
	gate_debug(" s since the epoch\nclock: monotonic ");
	gate_debug_uint(now(GATE_CLOCK_MONOTONIC));
	gate_debug(" ns\n");

	// 1. Discovery: ask for "origin"; the reply lists its state.
	union {
		struct gate_service_name_packet p;
		uint8_t bytes[10 + 7];
	} req = {.p = {
		.header = {.size = sizeof req.bytes, .code = GATE_PACKET_CODE_SERVICES, .domain = GATE_PACKET_DOMAIN_CALL},
		.count = 1,
	}};
	for (int i = 0; i < 7; i++)
		req.p.names[i] = "\x06origin"[i];
	send_packet(&req.p.header);
	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			fail("received a packet with an invalid size");
		if (p->code != GATE_PACKET_CODE_SERVICES || gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;
		const struct gate_service_state_packet *r = (const void *) p;
		if (p->size < 11 || r->count != 1 || !(r->states[ORIGIN] & GATE_SERVICE_STATE_AVAIL))
			fail("origin service is not available");
		break;
	}

	// 2. Accept a stream: the empty CALL is answered with {i32 id, i32 error}.
	struct gate_packet accept = {.size = sizeof accept, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_CALL};
	send_packet(&accept);
	for (;;) {
		struct gate_packet *p = recv_origin();
		if (gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;
		const int32_t *reply = (const int32_t *) (p + 1);
		if (p->size != 16 || reply[1] != 0)
			fail("accept failed");
		stream = reply[0];
		break;
	}

	// 3. We read nothing: FLOW {id, 0} closes our receive side at once.
	struct {
		struct gate_packet header;
		struct gate_flow flow;
	} flow = {
		.header = {.size = sizeof flow, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_FLOW},
		.flow = {.id = stream, .value = 0},
	};
	send_packet(&flow.header);

	// 4. Tick; send_text waits for origin's FLOW credit when needed.
	for (int i = 0; i < 3; i++) {
		if (i > 0)
			sleep_ms(200);
		send_text("tick\n");
	}

	// 5. Close our send side and wait for origin's FLOW {id, 0}, which says
	//    that the client has received everything.
	send_text("");
	while (!closed)
		recv_origin();
}
