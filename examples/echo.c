// echo: accepts one stream from the client at the origin and sends every
// chunk of its input back upper-cased, until the client's end of input.
//
//     echo hello | ./bin/gate call examples/echo.wasm      # prints HELLO
//
// Everything goes through packets on the `io` import (see gate.h): discover
// the `origin` service, accept a stream, then exchange FLOW (credit) and DATA
// (bytes) packets until both sides have closed.

#include <gate.h>

#define ORIGIN 0          // service code = position in our discovery request
#define WINDOW 4096       // input bytes we let the client have in flight

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));

static int32_t stream;    // stream id given by origin
static int64_t credit;    // bytes origin lets us send (its FLOW packets)
static bool closed;       // origin sent FLOW {stream, 0}
static bool eof;          // origin sent an empty DATA packet: end of input
static char pending[WINDOW];    // upper-cased input not yet echoed...
static uint32_t head, tail;     // ...is pending[head..tail)

GATE_NORETURN_ static void fail(const char *msg)
{
	gate_debug("echo: ", msg, "\n");
	gate_exit(1);
}

static void send_packet(const struct gate_packet *p)
{
	if (gate_send_packet(p) != 0)
		fail("bad packet size");
}

static void send_flow(int32_t value)
{
	struct {
		struct gate_packet header;
		struct gate_flow flow;
	} p = {
		.header = {.size = sizeof p, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_FLOW},
		.flow = {.id = stream, .value = value},
	};
	send_packet(&p.header);
}

// Receives the next packet that is not service discovery (code -1) or
// reserved (other negative codes).
static struct gate_packet *recv_packet(void)
{
	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			fail("received a packet with an invalid size");
		if (p->code >= 0)
			return p;
	}
}

// Updates the stream state from origin's FLOW and DATA packets.
static void handle(const struct gate_packet *p)
{
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
	} else if (gate_packet_domain(p) == GATE_PACKET_DOMAIN_DATA) {
		const struct gate_data_packet *d = (const void *) p;
		if (p->size < GATE_DATA_HEADER_SIZE || d->id != stream)
			fail("bad DATA packet");
		uint32_t n = p->size - GATE_DATA_HEADER_SIZE;
		if (n == 0)
			eof = true;
		else if (eof || n > WINDOW - tail)
			fail("received more data than we granted");
		for (uint32_t i = 0; i < n; i++) {
			char c = d->data[i];
			pending[tail++] = (c >= 'a' && c <= 'z') ? (char) (c - 'a' + 'A') : c;
		}
	}
}

// Sends pending[head..head+n) in one DATA packet.
static void send_data(uint32_t n)
{
	static union {
		struct gate_data_packet p;
		uint8_t bytes[GATE_DATA_HEADER_SIZE + WINDOW];
	} out;
	out.p.header = (struct gate_packet){
		.size = GATE_DATA_HEADER_SIZE + n,
		.code = ORIGIN,
		.domain = GATE_PACKET_DOMAIN_DATA,
	};
	out.p.id = stream;
	out.p.note = 0;
	for (uint32_t i = 0; i < n; i++)
		out.p.data[i] = pending[head + i];
	send_packet(&out.p.header);
	credit -= n;
	head += n;
}

__attribute__((export_name("_start")))
void start(void)
{
	// 1. Discovery: ask for "origin"; the reply lists the state of every
	//    service discovered so far (just this one, code 0).
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

	// 2. Accept: an empty CALL is answered when a client connects, with
	//    {i32 stream id, i32 error}.  Origin then grants send credit (FLOW).
	struct gate_packet accept = {.size = sizeof accept, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_CALL};
	send_packet(&accept);
	for (;;) {
		struct gate_packet *p = recv_packet();
		if (gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;
		const int32_t *reply = (const int32_t *) (p + 1);
		if (p->size != 16 || reply[1] != 0)
			fail("accept failed");
		stream = reply[0];
		break;
	}

	// 3. Grant read credit: the client may send us WINDOW bytes.
	send_flow(WINDOW);

	// 4. Echo until the end of input, sending as much as origin's credit
	//    allows.  When everything received has been echoed, the buffer is
	//    reset and the client gets the same amount of credit back.
	for (;;) {
		if (closed)
			fail("the client stopped receiving");
		if (head < tail && credit > 0) {
			uint32_t n = tail - head;
			send_data(n < credit ? n : (uint32_t) credit);
			continue;
		}
		if (head == tail) {
			if (eof)
				break;
			if (head > 0)
				send_flow((int32_t) head);
			head = tail = 0;
		}
		handle(recv_packet());
	}

	// 5. Close: FLOW {id, 0} ends our receive side (origin already sent its
	//    end-of-input), an empty DATA packet ends our send side.  Origin
	//    acknowledges the latter with FLOW {id, 0} once the client has
	//    everything we sent.
	send_flow(0);
	struct gate_data_packet end = {
		.header = {.size = GATE_DATA_HEADER_SIZE, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_DATA},
		.id = stream,
	};
	send_packet(&end.header);
	while (!closed)
		handle(recv_packet());
}
