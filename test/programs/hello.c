// cflags: -Wl,--initial-memory=196608
//
// hello: the classic Gate test program (tests.md §2.2).  It discovers the
// `origin` and `test` services, accepts byte streams from the client at the
// origin and greets them with "hello, world\n".
//
// Imports: env.__wasi_proc_exit, env.__wasi_fd_write, env.__gate_io_65536.
// Exports: memory (3 pages), greet, twice, multi, repl, fail, test_ext.
// Entry functions return 0 on success and 1 on failure; Gate ignores the
// value (abi.md §1.3), so failures are also reported on the debug log.

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

// Service codes are positions in the discovery order: we ask for
// "origin" and "test" in one request, so they get codes 0 and 1.
#define ORIGIN_CODE 0
#define TEST_CODE 1

static const char hello[] = "hello, world\n";
#define HELLO_LEN (sizeof hello - 1) // 13 bytes: DATA packet size 29, 32 on the wire

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));

static bool discovered;
static uint8_t origin_state;
static uint8_t test_state;

// The stream currently accepted from origin.
static int32_t stream_id = -1;
static int64_t send_credit;     // bytes we may still send (FLOW from origin)
static bool send_closed;        // origin sent FLOW {id, 0}: it accepts no more data
static int pending_data;        // non-empty DATA packets not yet answered
static uint32_t consumed;       // data bytes received and not yet re-granted
static bool recv_eof;           // empty DATA received: no more input

static int fail(const char *msg)
{
	gate_debug("hello: ");
	gate_debug(msg);
	gate_debug("\n");
	return 1;
}

static struct gate_packet *recv_packet(void)
{
	struct gate_packet *p = gate_recv_packet(recv_buf);
	if (p == NULL)
		fail("received packet with invalid size");
	return p;
}

// Sends "\x06origin\x04test" discovery (size 8+2+12 = 22, padded to 24) and
// waits for the response, which lists the state of both services.
static int discover(void)
{
	if (discovered) // discovering origin again would be a protocol violation
		return 0;

	static const char names[] = "\x06origin\x04test";
	union {
		struct gate_service_name_packet p;
		uint8_t bytes[offsetof(struct gate_service_name_packet, names) + sizeof names - 1];
	} req;

	req.p.header = (struct gate_packet){
		.size = sizeof req.bytes, // 22
		.code = GATE_PACKET_CODE_SERVICES,
		.domain = GATE_PACKET_DOMAIN_CALL,
	};
	req.p.count = 2;
	for (size_t i = 0; i < sizeof names - 1; i++)
		req.p.names[i] = names[i];

	if (gate_send_packet(&req.p.header) != 0)
		return fail("discovery send failed");

	for (;;) {
		struct gate_packet *p = recv_packet();
		if (p == NULL)
			return 1;
		// The response is a CALL with code -1.  An INFO with code -1 (state
		// notification after resume) or anything else is not it.
		if (p->code != GATE_PACKET_CODE_SERVICES || gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;

		struct gate_service_state_packet *r = (struct gate_service_state_packet *) p;
		if (p->size < 10 || r->count != 2 || p->size < 10u + r->count)
			return fail("unexpected discovery response");
		origin_state = r->states[ORIGIN_CODE];
		test_state = r->states[TEST_CODE];
		discovered = true;
		return 0;
	}
}

// Updates the stream state from a FLOW or DATA packet of origin.
static void handle_stream_packet(const struct gate_packet *p)
{
	switch (gate_packet_domain(p)) {
	case GATE_PACKET_DOMAIN_FLOW: {
		const struct gate_flow_packet *f = (const struct gate_flow_packet *) p;
		for (uint32_t i = 0; i < (p->size - GATE_PACKET_HEADER_SIZE) / sizeof(struct gate_flow); i++) {
			if (f->flows[i].id != stream_id)
				continue; // an earlier stream
			if (f->flows[i].value > 0)
				send_credit += f->flows[i].value;
			else if (f->flows[i].value == 0)
				send_closed = true;
			// negative values are service-specific notes
		}
		break;
	}

	case GATE_PACKET_DOMAIN_DATA: {
		if (p->size < GATE_DATA_HEADER_SIZE)
			break;
		const struct gate_data_packet *d = (const struct gate_data_packet *) p;
		if (d->id != stream_id)
			break;
		if (p->size == GATE_DATA_HEADER_SIZE) {
			recv_eof = true; // client EOF, or the ack of our FLOW {id, 0}
		} else {
			pending_data++;
			consumed += p->size - GATE_DATA_HEADER_SIZE;
		}
		break;
	}
	}
}

// Receives the next packet of origin that concerns the stream.
static int wait_stream_packet(void)
{
	for (;;) {
		struct gate_packet *p = recv_packet();
		if (p == NULL)
			return 1;
		if (p->code == ORIGIN_CODE) {
			handle_stream_packet(p);
			return 0;
		}
	}
}

static int send_flow(int32_t id, int32_t value)
{
	struct {
		struct gate_packet header;
		struct gate_flow flow;
	} pkt = {
		.header = {.size = sizeof pkt, .code = ORIGIN_CODE, .domain = GATE_PACKET_DOMAIN_FLOW},
		.flow = {.id = id, .value = value},
	};
	return gate_send_packet(&pkt.header);
}

// Accepts one stream from origin: an empty CALL is answered (when a client
// connects) with {i32 stream_id, i32 error}.  We then grant `recv_flow`
// bytes of receive credit (0 = we will not read) and wait for origin's first
// FLOW, which gives our send credit.
static int accept_stream(int32_t recv_flow)
{
	if (!(origin_state & GATE_SERVICE_STATE_AVAIL))
		return fail("origin service is not available");

	struct gate_packet call = {.size = sizeof call, .code = ORIGIN_CODE, .domain = GATE_PACKET_DOMAIN_CALL};
	if (gate_send_packet(&call) != 0)
		return fail("accept send failed");

	for (;;) {
		struct gate_packet *p = recv_packet();
		if (p == NULL)
			return 1;
		if (p->code != ORIGIN_CODE || gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue; // e.g. closing packets of an earlier stream
		if (p->size != 16)
			return fail("unexpected accept reply size");
		const int32_t *content = (const int32_t *) (p + 1);
		if (content[1] != 0)
			return fail("accept failed");
		stream_id = content[0];
		break;
	}

	send_credit = 0;
	send_closed = false;
	pending_data = 0;
	consumed = 0;
	recv_eof = false;

	if (send_flow(stream_id, recv_flow) != 0)
		return fail("flow send failed");

	while (send_credit == 0) {
		if (send_closed)
			return fail("stream closed by origin");
		if (wait_stream_packet() != 0)
			return 1;
	}
	return 0;
}

// Sends "hello, world\n" as one DATA packet (size 29, padded to 32).  If the
// credit is too small it waits for more FLOW (the original failed unless it
// had at least 20 bytes; with origin's initial 32767 the two are the same).
static int send_hello(void)
{
	while (send_credit < (int64_t) HELLO_LEN) {
		if (send_closed)
			return fail("stream closed by origin");
		if (wait_stream_packet() != 0)
			return 1;
	}
	if (send_closed)
		return fail("stream closed by origin");

	union {
		struct gate_data_packet p;
		uint8_t bytes[GATE_DATA_HEADER_SIZE + HELLO_LEN];
	} pkt;

	pkt.p.header = (struct gate_packet){
		.size = sizeof pkt.bytes, // 29
		.code = ORIGIN_CODE,
		.domain = GATE_PACKET_DOMAIN_DATA,
	};
	pkt.p.id = stream_id;
	pkt.p.note = 0;
	for (size_t i = 0; i < HELLO_LEN; i++)
		pkt.p.data[i] = hello[i];

	if (gate_send_packet(&pkt.p.header) != 0)
		return fail("data send failed");
	send_credit -= HELLO_LEN;
	return 0;
}

// Closes our sending half with an empty DATA packet.
static int close_stream(void)
{
	struct gate_data_packet pkt = {
		.header = {.size = GATE_DATA_HEADER_SIZE, .code = ORIGIN_CODE, .domain = GATE_PACKET_DOMAIN_DATA},
		.id = stream_id,
	};
	return gate_send_packet(&pkt.header);
}

EXPORT("greet")
int greet(void)
{
	if (discover() || accept_stream(0) || send_hello())
		return 1;
	return 0;
}

EXPORT("twice")
int twice(void)
{
	if (discover() || accept_stream(0) || send_hello() || send_hello())
		return 1;
	return 0;
}

// Serves clients forever: accept, greet, close.
EXPORT("multi")
int multi(void)
{
	if (discover())
		gate_exit(1);

	for (;;) {
		gate_debug("multi: accepting stream\n");
		if (accept_stream(0))
			gate_exit(1);
		gate_debug("multi: greeting connection\n");
		if (send_hello() || close_stream())
			gate_exit(1);
	}
}

// Greets once for every chunk of input from the client; returns at EOF.
EXPORT("repl")
int repl(void)
{
	if (discover() || accept_stream(4096))
		return 1;

	for (;;) {
		while (pending_data == 0 && !recv_eof) {
			if (wait_stream_packet() != 0)
				return 1;
		}
		if (pending_data == 0)
			return 0; // EOF

		pending_data--;
		if (send_hello())
			return 1;

		// Give the consumed input back as credit so the client's further
		// input (and its EOF) can be delivered.
		if (consumed > 0 && !recv_eof) {
			if (send_flow(stream_id, (int32_t) consumed) != 0)
				return fail("flow send failed");
			consumed = 0;
		}
	}
}

EXPORT("fail")
int fail_export(void)
{
	gate_debug("exiting with return value 1\n");
	gate_exit(1);
}

// If the `test` service is available, makes a CALL with 8 bytes of content
// (0x0102030405060708) and expects the same content back.
EXPORT("test_ext")
int test_ext(void)
{
	if (discover())
		return 1;
	if (!(test_state & GATE_SERVICE_STATE_AVAIL))
		return 0;

	const uint64_t value = 0x0102030405060708ULL;
	struct {
		struct gate_packet header;
		uint64_t value;
	} pkt = {
		.header = {.size = sizeof pkt, .code = TEST_CODE, .domain = GATE_PACKET_DOMAIN_CALL},
		.value = value,
	};
	if (gate_send_packet(&pkt.header) != 0)
		return fail("test call send failed");

	for (;;) {
		struct gate_packet *p = recv_packet();
		if (p == NULL)
			return 1;
		if (p->code != TEST_CODE || gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;
		if (p->size != sizeof pkt || *(const uint64_t *) (p + 1) != value)
			return fail("test service replied with unexpected content");
		return 0;
	}
}
