// tally: a counter that moves.  It counts up four times a second and sends
// "tally N\n" to the client at the origin whenever one is connected; every
// chunk of input the client sends adds 100 to the count.  The count lives in
// linear memory, so it goes wherever the instance goes: suspend it, snapshot
// it, run it in a browser tab (the console's "Move into this tab",
// docs/browser.md) and back on a server, and it carries on from where it was.
//
//     ./bin/gate call examples/tally.wasm        # Ctrl-C to stop
//
// When an instance is restored, a stream that had a client before has none
// now: origin tells the program with FLOW {id, 0} and the program accepts
// the next client (echo.c walks through the stream protocol).

#include <gate.h>

#define ORIGIN_CODE 0
#define TICK_NS 250000000ll // four counts a second
#define READ_CREDIT 4096

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));
static size_t recv_offset;

static uint64_t count; // the state that moves with the instance
static bool streaming;
static bool input_open;
static int32_t stream_id;
static int64_t send_credit;

GATE_NORETURN_ static void fail(const char *msg)
{
	gate_debug("tally: ", msg, "\n");
	gate_exit(1);
}

static void send_flow(int32_t id, int32_t value)
{
	struct {
		struct gate_packet header;
		struct gate_flow flow;
	} p = {
		.header = {.size = sizeof p, .code = ORIGIN_CODE, .domain = GATE_PACKET_DOMAIN_FLOW},
		.flow = {.id = id, .value = value},
	};
	gate_send_packet(&p.header);
}

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
	req.p.header = (struct gate_packet){.size = sizeof req.bytes, .code = GATE_PACKET_CODE_SERVICES, .domain = GATE_PACKET_DOMAIN_CALL};
	req.p.count = 1;
	for (int i = 0; i < 7; i++)
		req.p.names[i] = "\x06origin"[i];
	gate_send_packet(&req.p.header);

	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			fail("invalid packet");
		if (p->code != GATE_PACKET_CODE_SERVICES || gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;
		const struct gate_service_state_packet *r = (const struct gate_service_state_packet *) p;
		if (p->size >= 11 && r->count >= 1 && (r->states[0] & GATE_SERVICE_STATE_AVAIL))
			return;
		fail("origin service is not available");
	}
}

static void send_line(const char *prefix, uint64_t n, const char *suffix)
{
	union {
		struct gate_data_packet p;
		uint8_t bytes[GATE_DATA_HEADER_SIZE + 64];
	} pkt;
	size_t len = 0;
	for (const char *s = prefix; *s; s++)
		pkt.p.data[len++] = *s;
	char digits[24];
	char *end = digits + sizeof digits;
	for (char *d = gate_format_uint_(end, n, 10); d < end; d++)
		pkt.p.data[len++] = *d;
	for (const char *s = suffix; *s; s++)
		pkt.p.data[len++] = *s;

	if (!streaming || send_credit < (int64_t) len)
		return; // no client, or it is not keeping up: skip this line

	pkt.p.header = (struct gate_packet){.size = (uint32_t) (GATE_DATA_HEADER_SIZE + len), .code = ORIGIN_CODE, .domain = GATE_PACKET_DOMAIN_DATA};
	pkt.p.id = stream_id;
	pkt.p.note = 0;
	gate_send_packet(&pkt.p.header);
	send_credit -= (int64_t) len;
}

static void handle_packet(const struct gate_packet *p)
{
	if (p->code != ORIGIN_CODE)
		return; // e.g. a service state notification after a restore

	switch (gate_packet_domain(p)) {
	case GATE_PACKET_DOMAIN_CALL: // accept reply: {i32 stream_id, i32 error}
		if (p->size >= 16 && ((const int32_t *) (p + 1))[1] == 0) {
			stream_id = ((const int32_t *) (p + 1))[0];
			streaming = true;
			input_open = true;
			send_credit = 0;
			send_flow(stream_id, READ_CREDIT);
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
				// The client is gone (or the instance was restored
				// without it): wait for the next one.
				streaming = false;
				send_accept();
			}
		}
		break;

	case GATE_PACKET_DOMAIN_DATA: {
		const struct gate_data_packet *d = (const struct gate_data_packet *) p;
		if (!streaming || d->id != stream_id || !input_open)
			break;
		uint32_t n = p->size - GATE_DATA_HEADER_SIZE;
		if (n == 0) {
			input_open = false; // the client sends no more; keep counting for it
			send_flow(stream_id, 0);
			break;
		}
		count += 100;
		send_line("tally ", count, " (+100)\n");
		send_flow(stream_id, (int32_t) n); // read credit back
		break;
	}

	default:
		break;
	}
}

__attribute__((export_name("_start"))) void start(void)
{
	discover_origin();
	send_accept();

	uint64_t next = gate_clock_monotonic() + TICK_NS;
	for (;;) {
		uint64_t now = gate_clock_monotonic();
		if (next > now + TICK_NS)
			next = now + TICK_NS; // the clock of another host: never wait longer than a tick
		if (now >= next) {
			count++;
			send_line("tally ", count, "\n");
			next = now + TICK_NS;
			continue;
		}
		int r = gate_recv_packet_partial(recv_buf, &recv_offset, (int64_t) (next - now));
		if (r < 0)
			fail("received a packet with an invalid size");
		if (r > 0)
			handle_packet((const struct gate_packet *) recv_buf);
	}
}
