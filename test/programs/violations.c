// violations: packet protocol violations (abi.md §8.2, services.md §3.2).
//
// Imports: env.__gate_io_65536.  Exports: memory and one function per
// violation.  Each sends exactly one bad packet (after any valid packets
// needed to set the situation up) and then idles forever receiving and
// discarding input with io timeout -1, so the only way it ends is the host
// stopping it.  Expected host reactions (ABI_VIOLATION → KILLED unless noted):
//
//   size_small           header size 4                    "invalid op packet size: 4"
//   size_large           header size 65544 (all 65544 bytes are sent)
//   bad_code             code -2                          "invalid code in incoming packet: -2"
//   unknown_code         code 5, nothing discovered       "invalid service code in packet: 5"
//   bad_domain           domain 4 to discovered origin    "invalid domain in packet: 4"
//   short_data           12-byte DATA to origin           "data packet is too short: 12 bytes"
//   discovery_domain     discovery packet in INFO domain  "service discovery packet has wrong domain: 1"
//   discovery_short      9-byte discovery packet          "service discovery packet is too short: 9 bytes"
//   discovery_name_zero  name length 0                    "service name length in discovery packet is out of bounds"
//   discovery_truncated  name data shorter than its length "name data is truncated in service discovery packet"
//   rediscover           origin discovered in two requests "duplicate service"
//   flood                discovery of origin, then 100 000 empty INFO packets
//                        to it as fast as possible (valid, but a load test:
//                        INFO is ignored by origin)
//   no_credit            accepts an origin stream and sends 100 KiB of DATA
//                        without waiting for FLOW credit (origin grants
//                        32767; the original reports a plain error →
//                        KILLED/INTERNAL)
//
// Packets are written as raw bytes (including the padding to 8 bytes) so
// that malformed headers can be expressed.

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

#define ORIGIN_CODE 0

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));
static uint8_t send_buf[128 * 1024] __attribute__((aligned(8)));

// Sends len bytes.  If `discard` is set, input is received (into recv_buf)
// and thrown away at the same time, so that a congested output does not
// make the io wait return immediately for unread input.
static void send_raw(const void *data, size_t len, bool discard)
{
	size_t sent = 0;
	while (sent < len) {
		struct gate_iovec recv = {recv_buf, sizeof recv_buf};
		struct gate_iovec send = {(char *) data + sent, len - sent};
		size_t nsent = 0;
		gate_io(&recv, discard ? 1 : 0, NULL, &send, 1, &nsent, GATE_IO_WAIT, NULL);
		sent += nsent;
	}
}

__attribute__((noreturn)) static void idle(void)
{
	for (;;) {
		struct gate_iovec recv = {recv_buf, sizeof recv_buf};
		gate_io(&recv, 1, NULL, NULL, 0, NULL, GATE_IO_WAIT, NULL);
	}
}

static void put_header(void *buf, uint32_t size, int16_t code, uint8_t domain)
{
	struct gate_packet *p = buf;
	p->size = size;
	p->code = code;
	p->domain = domain;
	p->index = 0;
}

// Sends a bad packet built in send_buf (wire length = its padded size), then
// idles.
__attribute__((noreturn)) static void send_bad(size_t wire_len)
{
	send_raw(send_buf, wire_len, true);
	idle();
}

// Discovers origin with a valid request and waits for the response.
static void discover_origin(void)
{
	static const uint8_t req[24] __attribute__((aligned(8))) = {
		17, 0, 0, 0, 0xff, 0xff, GATE_PACKET_DOMAIN_CALL, 0, // size 17, code -1
		1, 0,                                                // count 1
		6, 'o', 'r', 'i', 'g', 'i', 'n',                     // padded to 24
	};
	send_raw(req, sizeof req, false);

	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			idle();
		if (p->code == GATE_PACKET_CODE_SERVICES && gate_packet_domain(p) == GATE_PACKET_DOMAIN_CALL)
			return;
	}
}

// Accepts a stream from origin; returns its id.
static int32_t accept_origin(void)
{
	struct gate_packet call = {.size = sizeof call, .code = ORIGIN_CODE, .domain = GATE_PACKET_DOMAIN_CALL};
	send_raw(&call, sizeof call, false);

	for (;;) {
		struct gate_packet *p = gate_recv_packet(recv_buf);
		if (p == NULL)
			idle();
		if (p->code == ORIGIN_CODE && gate_packet_domain(p) == GATE_PACKET_DOMAIN_CALL && p->size >= 16)
			return ((const int32_t *) (p + 1))[0];
	}
}

EXPORT("size_small")
void size_small(void)
{
	put_header(send_buf, 4, GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	send_bad(8);
}

EXPORT("size_large")
void size_large(void)
{
	// The whole claimed packet is sent (content zero), so a host that reads
	// the full packet before validating it also sees the violation.
	put_header(send_buf, 65544, GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	send_bad(65544);
}

EXPORT("bad_code")
void bad_code(void)
{
	put_header(send_buf, 8, -2, GATE_PACKET_DOMAIN_CALL);
	send_bad(8);
}

EXPORT("unknown_code")
void unknown_code(void)
{
	put_header(send_buf, 8, 5, GATE_PACKET_DOMAIN_CALL);
	send_bad(8);
}

EXPORT("bad_domain")
void bad_domain(void)
{
	discover_origin();
	put_header(send_buf, 8, ORIGIN_CODE, 4);
	send_bad(8);
}

EXPORT("short_data")
void short_data(void)
{
	discover_origin();
	put_header(send_buf, 12, ORIGIN_CODE, GATE_PACKET_DOMAIN_DATA);
	((int32_t *) send_buf)[2] = 0; // stream id; no room for the note
	send_bad(16);
}

// A discovery request body for "origin": count 1, "\x06origin".
static void put_origin_names(uint8_t *content)
{
	static const uint8_t names[9] = {1, 0, 6, 'o', 'r', 'i', 'g', 'i', 'n'};
	for (int i = 0; i < 9; i++)
		content[i] = names[i];
}

EXPORT("discovery_domain")
void discovery_domain(void)
{
	put_header(send_buf, 17, GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_INFO);
	put_origin_names(send_buf + 8);
	send_bad(24);
}

EXPORT("discovery_short")
void discovery_short(void)
{
	put_header(send_buf, 9, GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	send_buf[8] = 1; // low byte of count; the high byte is missing
	send_bad(16);
}

EXPORT("discovery_name_zero")
void discovery_name_zero(void)
{
	put_header(send_buf, 11, GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	send_buf[8] = 1;  // count 1
	send_buf[9] = 0;
	send_buf[10] = 0; // name length 0
	send_bad(16);
}

EXPORT("discovery_truncated")
void discovery_truncated(void)
{
	// Name length 6 but only "ori" present: size 8 + 2 + 1 + 3 = 14.
	put_header(send_buf, 14, GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	put_origin_names(send_buf + 8);
	send_buf[14] = send_buf[15] = 0; // "gi" is padding, not name data
	send_bad(16);
}

EXPORT("rediscover")
void rediscover(void)
{
	discover_origin();
	put_header(send_buf, 17, GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	put_origin_names(send_buf + 8);
	send_bad(24);
}

#define FLOOD_PACKETS 100000
#define FLOOD_BATCH 8192 // packets per io call: 64 KiB

EXPORT("flood")
void flood(void)
{
	put_header(send_buf, 17, GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	put_origin_names(send_buf + 8);
	send_raw(send_buf, 24, true); // the response is not waited for

	for (int i = 0; i < FLOOD_BATCH; i++)
		put_header(send_buf + i * 8, 8, ORIGIN_CODE, GATE_PACKET_DOMAIN_INFO);

	for (int sent = 0; sent < FLOOD_PACKETS;) {
		int n = FLOOD_PACKETS - sent < FLOOD_BATCH ? FLOOD_PACKETS - sent : FLOOD_BATCH;
		send_raw(send_buf, (size_t) n * 8, true);
		sent += n;
	}
	idle();
}

#define NO_CREDIT_TOTAL (100 * 1024)
#define NO_CREDIT_CHUNK (NO_CREDIT_TOTAL / 2) // 51200 data bytes per packet

EXPORT("no_credit")
void no_credit(void)
{
	discover_origin();
	int32_t id = accept_origin();

	for (int i = 0; i < NO_CREDIT_CHUNK; i++)
		send_buf[GATE_DATA_HEADER_SIZE + i] = (uint8_t) ('a' + i % 26);

	struct gate_data_packet *p = (struct gate_data_packet *) send_buf;
	put_header(p, GATE_DATA_HEADER_SIZE + NO_CREDIT_CHUNK, ORIGIN_CODE, GATE_PACKET_DOMAIN_DATA);
	p->id = id;
	p->note = 0;

	// 51216 bytes is a multiple of 8, so no padding is needed.
	send_raw(send_buf, GATE_DATA_HEADER_SIZE + NO_CREDIT_CHUNK, true);
	send_raw(send_buf, GATE_DATA_HEADER_SIZE + NO_CREDIT_CHUNK, true);
	idle();
}
