// services: exercises the built-in services (spec services.md §4–§7) and a
// test extension over the real packet protocol, printing what it receives to
// the debug log (fd 2) in an exact format checked by
// test/runtime/services.test.ts.
//
// Imports: env.__wasi_fd_write, env.__gate_io_65536.
// Exports: memory, catalog, identity, random, scope, unknown, ext, flood.
//
// Each export is one run: it discovers the services it needs (their codes
// are positions in this run's discovery order, starting at 0), makes its
// calls one at a time and waits for each reply, ignoring unrelated packets.
// Entry functions return 0 on success and 1 on failure; failures are also
// reported on the debug log as "services: <message>\n".

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));
static uint8_t send_buf[1024] __attribute__((aligned(8)));

// States of the services discovered so far (response of the last discovery).
static uint8_t states[GATE_MAX_SERVICES];
static unsigned num_states;

static int fail(const char *msg)
{
	gate_debug("services: ");
	gate_debug(msg);
	gate_debug("\n");
	return 1;
}

static void debug_hex_bytes(const uint8_t *data, size_t len)
{
	char buf[64];
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		buf[n++] = "0123456789abcdef"[data[i] >> 4];
		buf[n++] = "0123456789abcdef"[data[i] & 15];
		if (n == sizeof buf) {
			gate_debug_data(buf, n);
			n = 0;
		}
	}
	gate_debug_data(buf, n);
}

static const uint8_t *packet_content(const struct gate_packet *p)
{
	return (const uint8_t *) p + GATE_PACKET_HEADER_SIZE;
}

static size_t packet_content_len(const struct gate_packet *p)
{
	return p->size - GATE_PACKET_HEADER_SIZE;
}

// Sends a packet with the given code, domain and content (at most
// sizeof send_buf - 8 bytes).
static int send_packet(int16_t code, uint8_t domain, const void *content, size_t len)
{
	if (len > sizeof send_buf - GATE_PACKET_HEADER_SIZE)
		return fail("packet content too long");
	struct gate_packet *p = (struct gate_packet *) send_buf;
	*p = (struct gate_packet){
		.size = (uint32_t) (GATE_PACKET_HEADER_SIZE + len),
		.code = code,
		.domain = domain,
	};
	for (size_t i = 0; i < len; i++)
		send_buf[GATE_PACKET_HEADER_SIZE + i] = ((const uint8_t *) content)[i];
	if (gate_send_packet(p) != 0)
		return fail("send failed");
	return 0;
}

// Waits for the next packet with this code and domain; others are ignored.
static struct gate_packet *wait_packet(int16_t code, unsigned domain)
{
	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL) {
			fail("received packet with invalid size");
			return NULL;
		}
		if (p->code == code && gate_packet_domain(p) == domain)
			return p;
	}
}

// Discovers `count` services in one request.  `names` is the encoded name
// list ({u8 len, bytes}...), `names_len` its size.  The states of all
// services discovered so far are stored in states[] / num_states.
static int discover(unsigned count, const char *names, size_t names_len)
{
	uint8_t content[2 + 256];
	if (names_len > sizeof content - 2)
		return fail("discovery names too long");
	content[0] = (uint8_t) count;
	content[1] = (uint8_t) (count >> 8);
	for (size_t i = 0; i < names_len; i++)
		content[2 + i] = (uint8_t) names[i];
	if (send_packet(GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL, content, 2 + names_len))
		return 1;

	struct gate_packet *p = wait_packet(GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	if (p == NULL)
		return 1;
	const struct gate_service_state_packet *r = (const struct gate_service_state_packet *) p;
	if (p->size < 10 || p->size < 10u + r->count)
		return fail("malformed discovery response");
	num_states = r->count;
	for (unsigned i = 0; i < num_states; i++)
		states[i] = r->states[i];
	return 0;
}

// Discovers a single service and fails unless it is available; its code is
// stored in *code.
static int discover_one(const char *name, int16_t *code)
{
	char names[1 + GATE_SERVICE_NAME_MAX];
	size_t len = gate_strlen_(name);
	if (len == 0 || len > GATE_SERVICE_NAME_MAX)
		return fail("bad service name");
	names[0] = (char) len;
	for (size_t i = 0; i < len; i++)
		names[1 + i] = name[i];
	unsigned before = num_states;
	if (discover(1, names, 1 + len))
		return 1;
	if (num_states != before + 1)
		return fail("unexpected discovery response count");
	if (!(states[before] & GATE_SERVICE_STATE_AVAIL)) {
		gate_debug("services: ");
		gate_debug(name);
		gate_debug(" unavailable\n");
		return 1;
	}
	*code = (int16_t) before;
	return 0;
}

// Sends a CALL and waits for its reply (a CALL packet with the same code).
static struct gate_packet *call(int16_t code, const void *content, size_t len)
{
	if (send_packet(code, GATE_PACKET_DOMAIN_CALL, content, len))
		return NULL;
	return wait_packet(code, GATE_PACKET_DOMAIN_CALL);
}

// Discovers `catalog`, calls "json" and prints the reply content verbatim,
// followed by "length=<content length>\n" (the debug log gets a newline
// appended at the end if it lacks one, so a trailer is needed to see whether
// the content itself ends with one).
EXPORT("catalog")
int catalog(void)
{
	int16_t code;
	if (discover_one("catalog", &code))
		return 1;
	struct gate_packet *p = call(code, "json", 4);
	if (p == NULL)
		return 1;
	gate_debug_data(packet_content(p), packet_content_len(p));
	gate_debug("length=");
	gate_debug_uint(packet_content_len(p));
	gate_debug("\n");
	return 0;
}

// Discovers `identity` and prints "principal=<id>\ninstance=<uuid>\n".
EXPORT("identity")
int identity(void)
{
	int16_t code;
	if (discover_one("identity", &code))
		return 1;

	static const uint8_t principal_call[1] = {0};
	struct gate_packet *p = call(code, principal_call, 1);
	if (p == NULL)
		return 1;
	gate_debug("principal=");
	gate_debug_data(packet_content(p), packet_content_len(p));
	gate_debug("\n");

	static const uint8_t instance_call[1] = {1};
	p = call(code, instance_call, 1);
	if (p == NULL)
		return 1;
	gate_debug("instance=");
	gate_debug_data(packet_content(p), packet_content_len(p));
	gate_debug("\n");
	return 0;
}

// Discovers `random`, asks for 16 bytes and prints "random=<32 hex digits>\n",
// then asks for 0 bytes and prints "empty=<reply content length>\n".
EXPORT("random")
int random(void)
{
	int16_t code;
	if (discover_one("random", &code))
		return 1;

	static const uint8_t sixteen[1] = {16};
	struct gate_packet *p = call(code, sixteen, 1);
	if (p == NULL)
		return 1;
	gate_debug("random=");
	debug_hex_bytes(packet_content(p), packet_content_len(p));
	gate_debug("\n");

	static const uint8_t zero[1] = {0};
	p = call(code, zero, 1);
	if (p == NULL)
		return 1;
	gate_debug("empty=");
	gate_debug_uint(packet_content_len(p));
	gate_debug("\n");
	return 0;
}

// Discovers `scope`, restricts the program scope to program:system and prints
// "scope=<i16 error>\n" (or "scope=size <n>\n" if the reply is not 2 bytes).
EXPORT("scope")
int scope(void)
{
	int16_t code;
	if (discover_one("scope", &code))
		return 1;

	static const char restrict_call[] = "\x00\x01\x0eprogram:system"; // restrict, 1 scope, 14 bytes
	struct gate_packet *p = call(code, restrict_call, sizeof restrict_call - 1);
	if (p == NULL)
		return 1;
	size_t len = packet_content_len(p);
	if (len != 2) {
		gate_debug("scope=size ");
		gate_debug_uint(len);
		gate_debug("\n");
		return 1;
	}
	const uint8_t *c = packet_content(p);
	gate_debug("scope=");
	gate_debug_int((int16_t) (c[0] | (c[1] << 8)));
	gate_debug("\n");
	return 0;
}

// Discovers `nonexistent` and `origin` in one request and prints the states
// of all discovered services: "states=0,1\n".
EXPORT("unknown")
int unknown(void)
{
	static const char names[] = "\x0bnonexistent\x06origin";
	if (discover(2, names, sizeof names - 1))
		return 1;
	gate_debug("states=");
	for (unsigned i = 0; i < num_states; i++) {
		if (i > 0)
			gate_debug(",");
		gate_debug_uint(states[i]);
	}
	gate_debug("\n");
	return 0;
}

// Discovers the `test` extension, calls it with the 8 bytes 01..08 and prints
// "echo=<content as hex>\n", sends an INFO packet "hi" (no reply), then calls
// it with "bye" and prints "reply=<content as text>\n".
EXPORT("ext")
int ext(void)
{
	int16_t code;
	if (discover_one("test", &code))
		return 1;

	static const uint8_t bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct gate_packet *p = call(code, bytes, sizeof bytes);
	if (p == NULL)
		return 1;
	gate_debug("echo=");
	debug_hex_bytes(packet_content(p), packet_content_len(p));
	gate_debug("\n");

	if (send_packet(code, GATE_PACKET_DOMAIN_INFO, "hi", 2))
		return 1;

	p = call(code, "bye", 3);
	if (p == NULL)
		return 1;
	gate_debug("reply=");
	gate_debug_data(packet_content(p), packet_content_len(p));
	gate_debug("\n");
	return 0;
}

// Discovers the `test` extension and sends it 1000 INFO packets of 1000
// bytes (content: the packet's number as u32, then zeros) as fast as the
// packet stream takes them, then prints "sent\n" and returns.  A slow
// service must hold it back (test/server/extension-backpressure.test.ts).
EXPORT("flood")
int flood(void)
{
	int16_t code;
	if (discover_one("test", &code))
		return 1;
	static uint8_t content[1000];
	for (uint32_t i = 0; i < 1000; i++) {
		content[0] = (uint8_t) i;
		content[1] = (uint8_t) (i >> 8);
		content[2] = (uint8_t) (i >> 16);
		content[3] = (uint8_t) (i >> 24);
		if (send_packet(code, GATE_PACKET_DOMAIN_INFO, content, sizeof content))
			return 1;
	}
	gate_debug("sent\n");
	return 0;
}
