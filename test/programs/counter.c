// cflags: -Wl,--initial-memory=2097152
// counter: long-running CPU-bound programs for preemption, suspend,
// snapshot and migration tests.
//
// Imports: env.__gate_io_65536, env.__wasi_fd_write, env.__wasi_proc_exit.
// Exports: memory, run, compute, deep.
//
//   run      counts forever.  Each round does ~50 ms of pure computation
//            (no I/O, so it can only be stopped by preemption checks) and
//            increments two copies of the count: an i64 local of `run`
//            updated through a nested call, and a variable in linear memory.
//            Both must agree after any suspend/resume (else "MISMATCH" on
//            the debug log and exit 1).  Every 10th round logs
//            "counter <n>\n".  The count is sent as "<n>\n" to a client at
//            the origin whenever one is connected and there is credit.
//   compute  a pure CPU loop forever with no I/O at all.
//   deep     recursion to depth 10000 with a live value in every frame (the
//            2 MiB initial memory leaves room for the unwound stack); at
//            the bottom it polls io (timeout 0) until it sees that it has
//            been resumed, then unwinds and logs "deep <result> ok\n" (or
//            "deep <result> MISMATCH\n" and exit 1), where the result
//            combines the values of all frames.  Logs "deep: bottom\n"
//            when the bottom is reached.

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

// ---------------------------------------------------------------------------
// Computation

// About 50 ms of work per round on a current x86-64 core running V8's
// optimizing tier; instrumented code takes longer, which is fine.
#define WORK_ITERATIONS 20000000

#define LOG_EVERY 10

static volatile uint64_t memory_count; // the copy of the count in linear memory
static volatile uint64_t work_sink;    // keeps the work from being optimized away

static uint64_t xorshift(uint64_t x)
{
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

__attribute__((noinline)) static uint64_t work(uint64_t seed)
{
	uint64_t x = seed | 1;
	for (uint32_t i = 0; i < WORK_ITERATIONS; i++)
		x = xorshift(x);
	return x;
}

// The nested call through which the local count accumulates: its argument
// and result live on the wasm stack while the work runs.
__attribute__((noinline)) static uint64_t step(uint64_t count)
{
	work_sink = work(count + work_sink);
	return count + 1;
}

// ---------------------------------------------------------------------------
// Origin stream

#define ORIGIN_CODE 0

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));
static size_t recv_offset; // bytes of a partially received packet

static bool streaming;      // a stream is open
static int32_t stream_id;
static int64_t send_credit;

static void send_accept(void)
{
	struct gate_packet call = {.size = sizeof call, .code = ORIGIN_CODE, .domain = GATE_PACKET_DOMAIN_CALL};
	gate_send_packet(&call);
}

static void discover_origin(void)
{
	union {
		struct gate_service_name_packet p;
		uint8_t bytes[offsetof(struct gate_service_name_packet, names) + 7];
	} req;

	req.p.header = (struct gate_packet){
		.size = sizeof req.bytes, // 17
		.code = GATE_PACKET_CODE_SERVICES,
		.domain = GATE_PACKET_DOMAIN_CALL,
	};
	req.p.count = 1;
	for (int i = 0; i < 7; i++)
		req.p.names[i] = "\x06origin"[i];
	gate_send_packet(&req.p.header);

	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			break;
		if (p->code != GATE_PACKET_CODE_SERVICES || gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;
		const struct gate_service_state_packet *r = (const struct gate_service_state_packet *) p;
		if (p->size >= 11 && r->count >= 1 && (r->states[0] & GATE_SERVICE_STATE_AVAIL))
			return;
		break;
	}
	gate_debug("counter: origin service is not available\n");
	gate_exit(1);
}

static void handle_packet(const struct gate_packet *p)
{
	if (p->code != ORIGIN_CODE)
		return; // e.g. a service state notification after resume

	switch (gate_packet_domain(p)) {
	case GATE_PACKET_DOMAIN_CALL: // accept reply: {i32 stream_id, i32 error}
		if (p->size >= 16 && ((const int32_t *) (p + 1))[1] == 0) {
			stream_id = ((const int32_t *) (p + 1))[0];
			streaming = true;
			send_credit = 0;
			// We never read from the client: close our receiving half.
			struct {
				struct gate_packet header;
				struct gate_flow flow;
			} flow = {
				.header = {.size = sizeof flow, .code = ORIGIN_CODE, .domain = GATE_PACKET_DOMAIN_FLOW},
				.flow = {.id = stream_id, .value = 0},
			};
			gate_send_packet(&flow.header);
		} else {
			send_accept();
		}
		break;

	case GATE_PACKET_DOMAIN_FLOW:
		if (!streaming)
			break;
		for (uint32_t i = 0; i < (p->size - GATE_PACKET_HEADER_SIZE) / sizeof(struct gate_flow); i++) {
			const struct gate_flow *f = &((const struct gate_flow_packet *) p)->flows[i];
			if (f->id != stream_id)
				continue;
			if (f->value > 0) {
				send_credit += f->value;
			} else if (f->value == 0) {
				// The client is gone (or the stream was restored without
				// a client): forget the stream and wait for the next one.
				// Nothing more may be sent on it.
				streaming = false;
				send_accept();
			}
		}
		break;

	default:
		break; // DATA: only the empty ack of our FLOW {id, 0}
	}
}

// Handles whatever packets have arrived, without waiting.
static void poll_packets(void)
{
	for (;;) {
		int r = gate_recv_packet_partial(recv_buf, &recv_offset, 0);
		if (r == 0)
			return;
		if (r < 0) {
			gate_debug("counter: received packet with invalid size\n");
			gate_exit(1);
		}
		handle_packet((const struct gate_packet *) recv_buf);
	}
}

static void send_count(uint64_t count)
{
	char digits[24];
	char *end = digits + sizeof digits;
	char *p = gate_format_uint_(end - 1, count, 10);
	end[-1] = '\n';
	size_t len = (size_t) (end - p);

	if (!streaming || send_credit < (int64_t) len)
		return; // no client, or it is not keeping up: skip this one

	union {
		struct gate_data_packet p;
		uint8_t bytes[GATE_DATA_HEADER_SIZE + sizeof digits];
	} pkt;
	pkt.p.header = (struct gate_packet){
		.size = (uint32_t) (GATE_DATA_HEADER_SIZE + len),
		.code = ORIGIN_CODE,
		.domain = GATE_PACKET_DOMAIN_DATA,
	};
	pkt.p.id = stream_id;
	pkt.p.note = 0;
	for (size_t i = 0; i < len; i++)
		pkt.p.data[i] = p[i];
	gate_send_packet(&pkt.p.header);
	send_credit -= (int64_t) len;
}

// ---------------------------------------------------------------------------
// Entry functions

EXPORT("run")
void run(void)
{
	discover_origin();
	send_accept();

	uint64_t count = memory_count; // 0 on a fresh instance
	for (;;) {
		count = step(count);
		memory_count++;

		if (count != memory_count) {
			gate_debug("MISMATCH local=");
			gate_debug_uint(count);
			gate_debug(" memory=");
			gate_debug_uint(memory_count);
			gate_debug("\n");
			gate_exit(1);
		}

		if (count % LOG_EVERY == 0) {
			gate_debug("counter ");
			gate_debug_uint(count);
			gate_debug("\n");
		}

		poll_packets();
		send_count(count);
	}
}

EXPORT("compute")
void compute(void)
{
	uint64_t x = 1;
	for (;;) {
		x = xorshift(x);
		work_sink = x; // a memory write, so the loop has an effect
	}
}

#define DEEP_DEPTH 10000

static uint64_t frame_value(uint32_t depth)
{
	return (uint64_t) (depth * 2654435761u); // distinct per frame
}

static bool io_reports_started(void)
{
	uint64_t flags = 0;
	gate_io(NULL, 0, NULL, NULL, 0, NULL, 0, &flags);
	return (flags & GATE_IO_FLAG_STARTED) != 0;
}

// Waits at the bottom of the recursion: io with timeout 0 is a suspension
// point.  The first io call after a (re)start reports GATE_IO_FLAG_STARTED:
// the first report is the initial start, and only after it has been seen is
// the bottom announced (a suspend that came earlier would be taken for the
// initial start after the restore); a second one means we were resumed.
__attribute__((noinline)) static void wait_for_resume(void)
{
	while (!io_reports_started())
		;
	gate_debug("deep: bottom\n");
	while (!io_reports_started())
		;
}

// Non-tail recursion: `value` is live across the call, so every frame keeps
// it (in a wasm local) until the recursion unwinds.  The result combines the
// frames as below * 3 + value (not a plain sum, which LLVM could turn into a
// loop; and multiplying by an odd number keeps every frame significant).
__attribute__((noinline)) static uint64_t recurse(uint32_t depth)
{
	uint64_t value = frame_value(depth);
	uint64_t below;
	if (depth + 1 < DEEP_DEPTH)
		below = recurse(depth + 1);
	else {
		wait_for_resume();
		below = 0;
	}
	return below * 3 + value;
}

EXPORT("deep")
void deep(void)
{
	uint64_t sum = recurse(0);

	uint64_t expect = 0;
	for (uint32_t d = DEEP_DEPTH; d-- > 0;)
		expect = expect * 3 + frame_value(d);

	gate_debug("deep ");
	gate_debug_uint(sum);
	if (sum != expect) {
		gate_debug(" MISMATCH\n");
		gate_exit(1);
	}
	gate_debug(" ok\n");
}
