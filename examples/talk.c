// talk: a chat between clients whose programs are peers.  The client's
// first line names the group; every later line goes to the other members
// as a peer message, and their lines come back to the client prefixed
// with the first 8 characters of the sender's instance id.
//
//     ./bin/gate http://localhost:6473 talk lobby     # in two terminals
//
// The server must enable the peer service (service.peer.enabled = true);
// groups belong to the principal, so both terminals use the same key.
// See docs/services.md "peer" and sdk/c/gate-peer.h.

#include <gate.h>
#include <gate-peer.h>

#define ORIGIN 0
#define PEER 1
#define WINDOW 4096
#define MAX_PEERS 64
#define ID_LEN 36

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));

static int32_t stream = -1;
static int64_t credit;       // bytes origin lets us send
static char line[WINDOW];    // client input not yet ended by a newline
static uint32_t line_len;
static char out[1 << 15];    // output waiting for origin credit
static uint32_t out_len;

static char group[GATE_PEER_NAME_MAX + 1];
static bool joined;
static char peers[MAX_PEERS][ID_LEN];
static int npeers;

// Peer index of each SEND awaiting its reply (-1: another call), in order.
static int pending[256];
static uint8_t pending_head, pending_count;

GATE_NORETURN_ static void fail(const char *msg)
{
	gate_debug("talk: ");
	gate_debug(msg);
	gate_debug("\n");
	gate_exit(1);
}

static void put(const void *s, size_t n)
{
	if (out_len + n > sizeof out)
		return; // the client is not reading: drop (it is a chat)
	for (size_t i = 0; i < n; i++)
		out[out_len + i] = ((const char *) s)[i];
	out_len += n;
}

static void puts_(const char *s) { put(s, gate_strlen_(s)); }

static void put_short(const char *id) { put(id, 8); }

static void flush(void)
{
	static union {
		struct gate_data_packet p;
		uint8_t bytes[GATE_DATA_HEADER_SIZE + sizeof out];
	} d;
	uint32_t n = out_len < credit ? out_len : (uint32_t) credit;
	if (stream < 0 || n == 0)
		return;
	d.p.header = (struct gate_packet){.size = GATE_DATA_HEADER_SIZE + n, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_DATA};
	d.p.id = stream;
	d.p.note = 0;
	for (uint32_t i = 0; i < n; i++)
		d.p.data[i] = out[i];
	gate_send_packet(&d.p.header);
	credit -= n;
	for (uint32_t i = n; i < out_len; i++)
		out[i - n] = out[i];
	out_len -= n;
}

static void origin_flow(int32_t value)
{
	struct {
		struct gate_packet header;
		struct gate_flow flow;
	} p = {
		.header = {.size = sizeof p, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_FLOW},
		.flow = {.id = stream, .value = value},
	};
	gate_send_packet(&p.header);
}

static void call_sent(int peer)
{
	pending[(uint8_t) (pending_head + pending_count)] = peer;
	pending_count++;
}

static int find_peer(const char *id, size_t len)
{
	if (len != ID_LEN)
		return -1;
	for (int i = 0; i < npeers; i++) {
		int j = 0;
		while (j < ID_LEN && peers[i][j] == id[j])
			j++;
		if (j == ID_LEN)
			return i;
	}
	return -1;
}

// A complete line from the client: the group name first, then chat lines.
static void client_line(const char *s, uint32_t n)
{
	if (!joined) {
		if (n == 0 || n > GATE_PEER_NAME_MAX)
			fail("the first line must name a group (1-255 bytes)");
		for (uint32_t i = 0; i < n; i++)
			group[i] = s[i];
		group[n] = 0;
		gate_peer_join(PEER, group, 0);
		call_sent(-1);
		gate_peer_receive(PEER, 64);
		call_sent(-1);
		joined = true;
		return;
	}
	if (npeers == 0) {
		puts_("* nobody else is here\n");
		return;
	}
	for (int i = 0; i < npeers; i++) {
		// Messages are not allowed to keep the program waiting if a peer's
		// program is slow: one that has no credit for us answers BUSY.
		gate_peer_send(PEER, group, peers[i], ID_LEN, s, n);
		call_sent(i);
	}
}

static void reply(const struct gate_packet *p)
{
	if (pending_count == 0)
		fail("a reply to no call");
	int peer = pending[pending_head++];
	pending_count--;
	int err = gate_peer_reply_error(p);
	if (err == GATE_PEER_ERROR_OK)
		return;
	if (peer < 0) {
		puts_("* cannot join the group\n"); // the only call other than SEND that can fail
		return;
	}
	if (peer < npeers && err == GATE_PEER_ERROR_BUSY) {
		puts_("* ");
		put_short(peers[peer]);
		puts_(" is busy: line not delivered\n");
	}
}

static void event(const struct gate_packet *p)
{
	struct gate_peer_event e;
	if (gate_peer_parse_event(p, &e) != 0 || (e.peer_len != ID_LEN && e.type != GATE_PEER_EVENT_RESET))
		return;
	int i = find_peer(e.peer, e.peer_len);
	switch (e.type) {
	case GATE_PEER_EVENT_JOINED:
		if (i < 0 && npeers < MAX_PEERS) {
			for (int j = 0; j < ID_LEN; j++)
				peers[npeers][j] = e.peer[j];
			npeers++;
		}
		puts_("* ");
		put_short(e.peer);
		puts_(" joined\n");
		break;
	case GATE_PEER_EVENT_LEFT:
		if (i >= 0) {
			for (int j = 0; j < ID_LEN; j++)
				peers[i][j] = peers[npeers - 1][j];
			npeers--;
		}
		puts_("* ");
		put_short(e.peer);
		puts_(" left\n");
		break;
	case GATE_PEER_EVENT_MESSAGE:
		put_short(e.peer);
		puts_(": ");
		put(e.data, e.data_len);
		puts_("\n");
		gate_peer_receive(PEER, 1);
		call_sent(-1);
		break;
	case GATE_PEER_EVENT_RESET:
		npeers = 0;
		puts_("* back after a suspension\n");
		break;
	default:
		break;
	}
}

static void client_data(const struct gate_data_packet *d)
{
	uint32_t n = d->header.size - GATE_DATA_HEADER_SIZE;
	if (n == 0)
		gate_exit(0); // the client left: so do we (the group sees us leave)
	if (n > WINDOW - line_len)
		fail("the client sent more than we granted");
	for (uint32_t i = 0; i < n; i++)
		line[line_len++] = d->data[i];
	uint32_t start = 0;
	for (uint32_t i = 0; i < line_len; i++) {
		if (line[i] == '\n') {
			client_line(line + start, i - start);
			start = i + 1;
		}
	}
	for (uint32_t i = start; i < line_len; i++)
		line[i - start] = line[i];
	line_len -= start;
	if (start > 0)
		origin_flow((int32_t) start);
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

	struct gate_packet accept = {.size = sizeof accept, .code = ORIGIN, .domain = GATE_PACKET_DOMAIN_CALL};
	bool accepted = false;
	for (;;) {
		flush();
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			fail("received a packet with an invalid size");
		unsigned domain = gate_packet_domain(p);
		if (p->code == GATE_PACKET_CODE_SERVICES && domain == GATE_PACKET_DOMAIN_CALL) {
			const struct gate_service_state_packet *r = (const void *) p;
			if (!(r->states[PEER] & GATE_SERVICE_STATE_AVAIL))
				fail("the peer service is not available (the server must enable it, and the program must run for a principal)");
			gate_send_packet(&accept);
		} else if (p->code == ORIGIN) {
			if (domain == GATE_PACKET_DOMAIN_CALL && !accepted) {
				accepted = true;
				stream = ((const int32_t *) (p + 1))[0];
				origin_flow(WINDOW);
			} else if (domain == GATE_PACKET_DOMAIN_FLOW) {
				const struct gate_flow_packet *f = (const void *) p;
				for (uint32_t i = 0; i < (p->size - 8) / 8; i++) {
					if (f->flows[i].value > 0)
						credit += f->flows[i].value;
					else if (f->flows[i].value == 0)
						gate_exit(0); // the client stopped reading
				}
			} else if (domain == GATE_PACKET_DOMAIN_DATA) {
				client_data((const void *) p);
			}
		} else if (p->code == PEER) {
			if (domain == GATE_PACKET_DOMAIN_CALL)
				reply(p);
			else if (domain == GATE_PACKET_DOMAIN_INFO)
				event(p);
		}
	}
}
