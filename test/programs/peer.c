// peer: a program driven line by line by its client (origin) that uses the
// peer service, for the peer tests and the peer bench.  Commands (one per
// line, fields separated by single spaces):
//
//   join G [shared]      leave G          receive N
//   send G PEER TEXT     connect G PEER HS
//   flow S N             write S TEXT     eof S          close S (FLOW 0)
//   overrun S N          (N bytes of DATA whatever the credit: a violation)
//   badcall              (a JOIN with a non-zero reserved byte: a violation)
//   echo                 (send every message back to its sender)
//   quiet                (count messages instead of printing them; keep granting credit)
//   expect N             (print "done N" once N messages have been counted)
//   ping G PEER N        (N round trips to an echoing peer: "rtt N MEDIAN P99" in ns)
//   blast G PEER N       (N 16-byte messages, up to 64 calls in flight, BUSY ones resent: "blasted N BUSY")
//   churn G N            (N × join and leave, as fast as replies come: "churned JOINED LIMITED")
//
// It prints what happens: "reply OP ERR", "joined G PEER", "left G PEER",
// "request G PEER HS", "connected S G PEER HS", "message G PEER TEXT",
// "reset G STATUS", "data S TEXT", "eof S NOTE", "flow S N" (send credit
// granted by the peer).  "ready" when it has accepted its client.

#include <gate.h>
#include <gate-peer.h>

#define ORIGIN 0
#define PEER 1
#define WINDOW 4096

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));

static int32_t origin_stream;
static int64_t origin_credit;
static char in[WINDOW];
static uint32_t in_len;
static char out[1 << 16];
static uint32_t out_len;

static uint8_t ops[256];             // ops of the calls awaiting replies (FIFO)
static uint8_t ops_head, ops_count;

// Origin stream state: a client that goes away (or a stream that a resume
// closed) is replaced by the next one.
static bool accepting, got_eof, got_flow0, sent_close;

static bool echo_mode, quiet_mode;
static uint32_t counted, expected;
static uint32_t credit_granted;      // quiet mode: credit granted but not used yet

// ping state
static bool waiting_pong;
// blast state
static uint32_t blast_busy, blast_ok, blast_inflight;
// churn state
static uint32_t churn_joined, churn_limited, churn_inflight;

GATE_NORETURN_ static void fail(const char *msg)
{
	gate_debug("peer: ");
	gate_debug(msg);
	gate_debug("\n");
	gate_exit(1);
}

static void put(const void *s, size_t n)
{
	if (out_len + n > sizeof out)
		fail("output buffer full");
	for (size_t i = 0; i < n; i++)
		out[out_len + i] = ((const char *) s)[i];
	out_len += n;
}

static void puts_(const char *s) { put(s, gate_strlen_(s)); }

static void put_int(int64_t v)
{
	char buf[24];
	char *end = buf + sizeof buf;
	char *p = gate_format_uint_(end, v < 0 ? (uint64_t) -v : (uint64_t) v, 10);
	if (v < 0)
		*--p = '-';
	put(p, (size_t) (end - p));
}

static void flush(void)
{
	if (accepting || sent_close)
		return;
	while (out_len > 0 && origin_credit > 0) {
		uint32_t n = out_len < origin_credit ? out_len : (uint32_t) origin_credit;
		if (n > 32768)
			n = 32768;
		static union {
			struct gate_data_packet p;
			uint8_t bytes[GATE_DATA_HEADER_SIZE + 32768];
		} d;
		d.p.header = (struct gate_packet){.size = GATE_DATA_HEADER_SIZE + n, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_DATA};
		d.p.id = origin_stream;
		d.p.note = 0;
		for (uint32_t i = 0; i < n; i++)
			d.p.data[i] = out[i];
		gate_send_packet(&d.p.header);
		origin_credit -= n;
		for (uint32_t i = n; i < out_len; i++)
			out[i - n] = out[i];
		out_len -= n;
	}
}

static void origin_flow(int32_t v)
{
	struct {
		struct gate_packet header;
		struct gate_flow flow;
	} p = {
		.header = {.size = sizeof p, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_FLOW},
		.flow = {.id = origin_stream, .value = v},
	};
	gate_send_packet(&p.header);
}

static void called(uint8_t op)
{
	ops[(uint8_t) (ops_head + ops_count)] = op;
	ops_count++;
}

// --- parsing helpers over a NUL-free line [s, e) ---

static const char *field(const char **s, const char *e, size_t *n)
{
	const char *b = *s;
	const char *p = b;
	while (p < e && *p != ' ')
		p++;
	*n = (size_t) (p - b);
	*s = p < e ? p + 1 : p;
	return b;
}

static int64_t number(const char *s, size_t n)
{
	int64_t v = 0;
	bool neg = n > 0 && s[0] == '-';
	for (size_t i = neg ? 1 : 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return neg ? -v : v;
}

// NUL-terminated copy of a field (group names for the helpers).
static char group_buf[256];
static const char *cstr(const char *s, size_t n)
{
	if (n > 255)
		n = 255;
	for (size_t i = 0; i < n; i++)
		group_buf[i] = s[i];
	group_buf[n] = 0;
	return group_buf;
}

static bool eq(const char *s, size_t n, const char *lit)
{
	size_t m = gate_strlen_(lit);
	if (n != m)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] != lit[i])
			return false;
	return true;
}

static void handle_packet(struct gate_packet *p);

static struct gate_packet *recv_one(void)
{
	flush();
	struct gate_packet *p = gate_recv_packet(recv_buf);
	if (p == NULL)
		fail("received a packet with an invalid size");
	return p;
}

static uint64_t now(void)
{
	uint64_t t = 0;
	gate_clock_time(GATE_CLOCK_MONOTONIC, 1, &t);
	return t;
}

static void sort(uint64_t *a, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		uint64_t x = a[i];
		uint32_t j = i;
		while (j > 0 && a[j - 1] > x) {
			a[j] = a[j - 1];
			j--;
		}
		a[j] = x;
	}
}

static uint64_t samples[10000];

static void command(const char *s, const char *e)
{
	size_t n, gn, pn, tn;
	const char *cmd = field(&s, e, &n);
	if (eq(cmd, n, "join")) {
		const char *g = field(&s, e, &gn);
		const char *f = field(&s, e, &tn);
		gate_peer_join(PEER, cstr(g, gn), eq(f, tn, "shared") ? GATE_PEER_JOIN_SHARED : 0);
		called(GATE_PEER_OP_JOIN);
	} else if (eq(cmd, n, "leave")) {
		const char *g = field(&s, e, &gn);
		gate_peer_leave(PEER, cstr(g, gn));
		called(GATE_PEER_OP_LEAVE);
	} else if (eq(cmd, n, "receive")) {
		const char *c = field(&s, e, &tn);
		gate_peer_receive(PEER, (uint32_t) number(c, tn));
		called(GATE_PEER_OP_RECEIVE);
	} else if (eq(cmd, n, "send")) {
		const char *g = field(&s, e, &gn);
		const char *peer = field(&s, e, &pn);
		gate_peer_send(PEER, cstr(g, gn), peer, pn, s, (size_t) (e - s));
		called(GATE_PEER_OP_SEND);
	} else if (eq(cmd, n, "connect")) {
		const char *g = field(&s, e, &gn);
		const char *peer = field(&s, e, &pn);
		gate_peer_connect(PEER, cstr(g, gn), peer, pn, s, (size_t) (e - s));
		called(GATE_PEER_OP_CONNECT);
	} else if (eq(cmd, n, "flow")) {
		const char *st = field(&s, e, &tn);
		int32_t id = (int32_t) number(st, tn);
		const char *v = field(&s, e, &tn);
		gate_peer_flow(PEER, id, (int32_t) number(v, tn));
	} else if (eq(cmd, n, "close")) {
		const char *st = field(&s, e, &tn);
		gate_peer_flow(PEER, (int32_t) number(st, tn), 0);
	} else if (eq(cmd, n, "write")) {
		const char *st = field(&s, e, &tn);
		gate_peer_data(PEER, (int32_t) number(st, tn), s, (size_t) (e - s));
	} else if (eq(cmd, n, "eof")) {
		const char *st = field(&s, e, &tn);
		gate_peer_data(PEER, (int32_t) number(st, tn), "", 0);
	} else if (eq(cmd, n, "overrun")) {
		const char *st = field(&s, e, &tn);
		int32_t id = (int32_t) number(st, tn);
		const char *c = field(&s, e, &tn);
		static char junk[4096];
		int64_t count = number(c, tn);
		gate_peer_data(PEER, id, junk, count > 4096 ? 4096 : (size_t) count);
	} else if (eq(cmd, n, "badcall")) {
		size_t o = gate_peer_begin_(PEER, GATE_PEER_OP_JOIN);
		gate_peer_buf_[GATE_PACKET_HEADER_SIZE + 3] = 1; // reserved byte
		gate_peer_buf_[o++] = 0;
		gate_peer_finish_(gate_peer_put_name_(o, "g", 1));
		called(GATE_PEER_OP_JOIN);
	} else if (eq(cmd, n, "echo")) {
		echo_mode = true;
	} else if (eq(cmd, n, "quiet")) {
		quiet_mode = true;
		gate_peer_receive(PEER, 1024);
		called(GATE_PEER_OP_RECEIVE);
		credit_granted = 1024;
	} else if (eq(cmd, n, "expect")) {
		const char *c = field(&s, e, &tn);
		expected = (uint32_t) number(c, tn);
		counted = 0;
	} else if (eq(cmd, n, "ping")) {
		const char *g = cstr(field(&s, e, &gn), gn);
		const char *peer = field(&s, e, &pn);
		const char *c = field(&s, e, &tn);
		uint32_t count = (uint32_t) number(c, tn);
		if (count > 10000)
			count = 10000;
		for (uint32_t i = 0; i < count; i++) {
			uint64_t t0 = now();
			waiting_pong = true;
			gate_peer_send(PEER, g, peer, pn, "ping", 4);
			called(GATE_PEER_OP_SEND);
			while (waiting_pong)
				handle_packet(recv_one());
			samples[i] = now() - t0;
		}
		sort(samples, count);
		puts_("rtt ");
		put_int(count);
		puts_(" ");
		put_int((int64_t) samples[count / 2]);
		puts_(" ");
		put_int((int64_t) samples[count * 99 / 100]);
		puts_("\n");
	} else if (eq(cmd, n, "blast")) {
		const char *g = cstr(field(&s, e, &gn), gn);
		const char *peer = field(&s, e, &pn);
		const char *c = field(&s, e, &tn);
		uint32_t count = (uint32_t) number(c, tn);
		blast_ok = blast_busy = blast_inflight = 0;
		while (blast_ok < count) {
			while (blast_inflight < 64 && blast_ok + blast_inflight < count) {
				gate_peer_send(PEER, g, peer, pn, "0123456789abcdef", 16);
				called(0x80 | GATE_PEER_OP_SEND);
				blast_inflight++;
			}
			handle_packet(recv_one());
		}
		puts_("blasted ");
		put_int(count);
		puts_(" ");
		put_int(blast_busy);
		puts_("\n");
	} else if (eq(cmd, n, "churn")) {
		const char *g = cstr(field(&s, e, &gn), gn);
		const char *c = field(&s, e, &tn);
		uint32_t count = (uint32_t) number(c, tn);
		churn_joined = churn_limited = churn_inflight = 0;
		for (uint32_t i = 0; i < count; i++) {
			gate_peer_join(PEER, g, 0);
			called(0x20 | GATE_PEER_OP_JOIN);
			gate_peer_leave(PEER, g);
			called(0x20 | GATE_PEER_OP_LEAVE);
			churn_inflight += 2;
			while (churn_inflight > 0)
				handle_packet(recv_one());
		}
		puts_("churned ");
		put_int(churn_joined);
		puts_(" ");
		put_int(churn_limited);
		puts_("\n");
	} else {
		puts_("unknown command\n");
	}
}

static void event(const struct gate_packet *p)
{
	struct gate_peer_event ev;
	if (gate_peer_parse_event(p, &ev) != 0)
		fail("malformed peer event");
	switch (ev.type) {
	case GATE_PEER_EVENT_JOINED:
	case GATE_PEER_EVENT_LEFT:
		puts_(ev.type == GATE_PEER_EVENT_JOINED ? "joined " : "left ");
		put(ev.group, ev.group_len);
		puts_(" ");
		put(ev.peer, ev.peer_len);
		puts_("\n");
		break;
	case GATE_PEER_EVENT_REQUEST:
		puts_("request ");
		put(ev.group, ev.group_len);
		puts_(" ");
		put(ev.peer, ev.peer_len);
		puts_(" ");
		put(ev.data, ev.data_len);
		puts_("\n");
		break;
	case GATE_PEER_EVENT_CONNECTED:
		puts_("connected ");
		put_int(ev.stream);
		puts_(" ");
		put(ev.group, ev.group_len);
		puts_(" ");
		put(ev.peer, ev.peer_len);
		puts_(" ");
		put(ev.data, ev.data_len);
		puts_("\n");
		break;
	case GATE_PEER_EVENT_MESSAGE:
		if (echo_mode) {
			gate_peer_send(PEER, cstr(ev.group, ev.group_len), ev.peer, ev.peer_len, ev.data, ev.data_len);
			called(0x40 | GATE_PEER_OP_SEND);
			gate_peer_receive(PEER, 1);
			called(0x40 | GATE_PEER_OP_RECEIVE);
			break;
		}
		if (waiting_pong) {
			waiting_pong = false;
			gate_peer_receive(PEER, 1);
			called(0x40 | GATE_PEER_OP_RECEIVE);
			break;
		}
		if (quiet_mode) {
			counted++;
			if (--credit_granted < 768) {
				gate_peer_receive(PEER, 256);
				called(0x40 | GATE_PEER_OP_RECEIVE);
				credit_granted += 256;
			}
			if (expected > 0 && counted == expected) {
				puts_("done ");
				put_int(counted);
				puts_("\n");
			}
			break;
		}
		puts_("message ");
		put(ev.group, ev.group_len);
		puts_(" ");
		put(ev.peer, ev.peer_len);
		puts_(" ");
		put(ev.data, ev.data_len);
		puts_("\n");
		break;
	case GATE_PEER_EVENT_RESET:
		puts_("reset ");
		put(ev.group, ev.group_len);
		puts_(" ");
		put_int(ev.status);
		puts_("\n");
		break;
	default:
		puts_("event ");
		put_int(ev.type);
		puts_("\n");
	}
}


static void accept_client(void)
{
	struct gate_packet accept = {.size = sizeof accept, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_CALL};
	gate_send_packet(&accept);
	accepting = true;
	origin_stream = -1;
	origin_credit = 0;
}

static void close_origin(void)
{
	if (!sent_close) {
		sent_close = true;
		origin_flow(0);
		struct gate_data_packet end = {
			.header = {.size = GATE_DATA_HEADER_SIZE, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_DATA},
			.id = origin_stream,
		};
		gate_send_packet(&end.header);
	}
	if (got_eof && got_flow0)
		accept_client();
}

static void origin_input(const struct gate_data_packet *d)
{
	uint32_t n = d->header.size - GATE_DATA_HEADER_SIZE;
	if (n == 0) {
		got_eof = true;
		close_origin();
		return;
	}
	if (n > WINDOW - in_len)
		fail("more input than granted");
	for (uint32_t i = 0; i < n; i++)
		in[in_len++] = d->data[i];
	uint32_t start = 0;
	for (uint32_t i = 0; i < in_len; i++) {
		if (in[i] == '\n') {
			command(in + start, in + i);
			start = i + 1;
		}
	}
	for (uint32_t i = start; i < in_len; i++)
		in[i - start] = in[i];
	in_len -= start;
	if (start > 0)
		origin_flow((int32_t) start);
}

static void handle_packet(struct gate_packet *p)
{
	unsigned domain = gate_packet_domain(p);
	if (p->code == ORIGIN) {
		if (domain == GATE_PACKET_DOMAIN_CALL && accepting) {
			accepting = false;
			got_eof = got_flow0 = sent_close = false;
			origin_stream = ((const int32_t *) (p + 1))[0];
			in_len = 0;
			origin_flow(WINDOW);
			puts_("ready\n");
		} else if (domain == GATE_PACKET_DOMAIN_FLOW) {
			const struct gate_flow_packet *f = (const void *) p;
			for (uint32_t i = 0; i < (p->size - 8) / 8; i++) {
				if (f->flows[i].id != origin_stream || accepting)
					continue;
				if (f->flows[i].value > 0) {
					origin_credit += f->flows[i].value;
				} else if (f->flows[i].value == 0) {
					got_flow0 = true;
					origin_credit = 0;
					if (got_eof)
						close_origin();
				}
			}
		} else if (domain == GATE_PACKET_DOMAIN_DATA) {
			origin_input((const void *) p);
		}
		return;
	}
	if (p->code != PEER)
		return;
	if (domain == GATE_PACKET_DOMAIN_CALL) {
		if (ops_count == 0)
			fail("a reply to no call");
		uint8_t op = ops[ops_head++];
		ops_count--;
		int err = gate_peer_reply_error(p);
		if (op & 0x80) {
			blast_inflight--;
			if (err == GATE_PEER_ERROR_OK)
				blast_ok++;
			else if (err == GATE_PEER_ERROR_BUSY)
				blast_busy++;
			else
				fail("blast send failed");
			return;
		}
		if (op & 0x40)
			return;
		if (op & 0x20) {
			churn_inflight--;
			if (op == (0x20 | GATE_PEER_OP_JOIN)) {
				if (err == GATE_PEER_ERROR_OK)
					churn_joined++;
				else if (err == GATE_PEER_ERROR_LIMIT)
					churn_limited++;
				else
					fail("churn join failed");
			}
			return;
		}
		puts_("reply ");
		put_int(op);
		puts_(" ");
		put_int(err);
		puts_("\n");
	} else if (domain == GATE_PACKET_DOMAIN_INFO) {
		event(p);
	} else if (domain == GATE_PACKET_DOMAIN_FLOW) {
		const struct gate_flow_packet *f = (const void *) p;
		for (uint32_t i = 0; i < (p->size - 8) / 8; i++) {
			puts_("flow ");
			put_int(f->flows[i].id);
			puts_(" ");
			put_int(f->flows[i].value);
			puts_("\n");
		}
	} else if (domain == GATE_PACKET_DOMAIN_DATA) {
		const struct gate_data_packet *d = (const void *) p;
		uint32_t n = p->size - GATE_DATA_HEADER_SIZE;
		if (n == 0) {
			puts_("eof ");
			put_int(d->id);
			puts_(" ");
			put_int(d->note);
			puts_("\n");
		} else {
			puts_("data ");
			put_int(d->id);
			puts_(" ");
			put(d->data, n);
			puts_("\n");
		}
	}
}

__attribute__((export_name("_start")))
void start(void)
{
	union {
		struct gate_service_name_packet p;
		uint8_t bytes[10 + 7 + 5];
	} req = {.p = {
		.header = {.size = sizeof req.bytes, .code = GATE_PACKET_CODE_SERVICES, .domain = GATE_PACKET_DOMAIN_CALL},
		.count = 2,
	}};
	const char *names = "\x06origin\x04peer";
	for (int i = 0; i < 12; i++)
		req.p.names[i] = names[i];
	gate_send_packet(&req.p.header);
	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			fail("bad packet");
		if (p->code != GATE_PACKET_CODE_SERVICES || gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;
		const struct gate_service_state_packet *r = (const void *) p;
		if (!(r->states[ORIGIN] & GATE_SERVICE_STATE_AVAIL))
			fail("origin is not available");
		if (!(r->states[PEER] & GATE_SERVICE_STATE_AVAIL))
			fail("peer is not available");
		break;
	}

	accept_client();
	for (;;)
		handle_packet(recv_one());
}
