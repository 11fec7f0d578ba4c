// grpcecho: uses the "echo" gRPC service (examples/grpc/echo_service.py,
// docs/grpc.md) over the real packet protocol, printing progress to the
// debug log as "grpcecho: ...\n" (checked by test/server/grpc.test.ts).
//
// Exports (each returns 0 on success, 1 on failure):
//   echo100  sends 100 CALLs (content: one byte, 0..99), then reads the 100
//            replies and checks that they come back in order
//   queued   asks the service to hold its replies ("hold"), sends 50 CALLs,
//            prints "sent 50", then reads the 50 replies in order (they
//            arrive once the instance has been suspended and resumed)
//   die      makes one call, then asks the service process to exit and
//            waits for a reply that never comes

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));
static uint8_t send_buf[64] __attribute__((aligned(8)));

static int fail(const char *msg)
{
	gate_debug("grpcecho: ");
	gate_debug(msg);
	gate_debug("\n");
	return 1;
}

static int send_packet(int16_t code, uint8_t domain, const void *content, size_t len)
{
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

// Discovers "echo" as the only service of this run: its code is 0.
static int discover_echo(void)
{
	static const uint8_t content[] = {1, 0, 4, 'e', 'c', 'h', 'o'};
	if (send_packet(GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL, content, sizeof content))
		return 1;
	struct gate_packet *p = wait_packet(GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	if (p == NULL)
		return 1;
	const struct gate_service_state_packet *r = (const struct gate_service_state_packet *) p;
	if (p->size < 11 || r->count != 1)
		return fail("malformed discovery response");
	if (!(r->states[0] & GATE_SERVICE_STATE_AVAIL))
		return fail("echo unavailable");
	return 0;
}

static int send_calls(unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		uint8_t b = (uint8_t) i;
		if (send_packet(0, GATE_PACKET_DOMAIN_CALL, &b, 1))
			return 1;
	}
	return 0;
}

static int read_replies(unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		struct gate_packet *p = wait_packet(0, GATE_PACKET_DOMAIN_CALL);
		if (p == NULL)
			return 1;
		if (p->size != GATE_PACKET_HEADER_SIZE + 1)
			return fail("reply of wrong size");
		if (((const uint8_t *) p)[GATE_PACKET_HEADER_SIZE] != (uint8_t) i)
			return fail("reply out of order");
	}
	return 0;
}

EXPORT("echo100")
int echo100(void)
{
	if (discover_echo() || send_calls(0, 100) || read_replies(0, 100))
		return 1;
	gate_debug("grpcecho: echoed 100\n");
	return 0;
}

EXPORT("queued")
int queued(void)
{
	if (discover_echo() || send_packet(0, GATE_PACKET_DOMAIN_INFO, "hold", 4) || send_calls(0, 50))
		return 1;
	gate_debug("grpcecho: sent 50\n");
	if (read_replies(0, 50))
		return 1;
	gate_debug("grpcecho: echoed 50\n");
	return 0;
}

EXPORT("die")
int die(void)
{
	if (discover_echo() || send_calls(7, 8) || read_replies(7, 8))
		return 1;
	gate_debug("grpcecho: asking the service to exit\n");
	if (send_packet(0, GATE_PACKET_DOMAIN_INFO, "exit", 4))
		return 1;
	wait_packet(0, GATE_PACKET_DOMAIN_CALL);
	return fail("got a reply from a service that exited");
}
