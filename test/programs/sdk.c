// The C SDK (sdk/c/gate.h, gate-service.h) against a real runtime: debug
// formatting by type, the clocks, raw gate_send/gate_recv, and speaking to
// services by name.  Writes its findings to the debug log, one per line, and
// the catalog to the client.

#include <gate-service.h>

static int errors;

static void check(bool ok, const char *what)
{
	if (!ok) {
		gate_debug("FAIL ", what, "\n");
		errors++;
	}
}

__attribute__((export_name("_start")))
int start(void)
{
	int8_t i8 = -8;
	uint16_t u16 = 65535;
	int64_t i64 = -9223372036854775807LL - 1;
	uint64_t u64 = 18446744073709551615ULL;
	char name[] = "name";
	gate_debug("int ", i8, " ", u16, " ", i64, " ", u64, "\n");
	gate_debug("str ", name, " ", (const char *) "const", " ptr ", (void *) 0x1a2b, " bool ", (bool) 1, "\n");
	gate_debug_str("debug_str\n");
	gate_debug_ptr((const void *) 0);
	gate_debug("\n");

	check(GATE_API_VERSION == 0, "GATE_API_VERSION");
	check(GATE_ALIGN_PACKET(0) == 0 && GATE_ALIGN_PACKET(1) == 8 && GATE_ALIGN_PACKET(8) == 8 && GATE_ALIGN_PACKET(17) == 24, "GATE_ALIGN_PACKET");
	uint64_t r1 = gate_clock_realtime(), m1 = gate_clock_monotonic();
	uint64_t m2 = gate_clock_monotonic();
	check(r1 > 1600000000ULL * 1000000000ULL, "gate_clock_realtime");
	check(m1 > 0 && m2 >= m1, "gate_clock_monotonic");

	// Raw stream: nothing to receive yet, and sending nothing sends nothing.
	uint8_t buf[8];
	check(gate_recv(buf, sizeof buf, 0) == 0, "gate_recv without input");
	check(gate_send(buf, 0, 0) == 0, "gate_send of nothing");
	gate_flags_t flags = 0;
	gate_io(NULL, 0, NULL, NULL, 0, NULL, 0, &flags);

	// Services by name: codes follow the discovery order.
	check(gate_service_discover("no.such/service") == 0 - 1, "unknown service");
	int catalog = gate_service_discover("catalog");
	check(catalog == 1, "catalog code");
	int identity = gate_service_discover("identity");
	check(identity == 2, "identity code");
	const struct gate_packet *p = gate_service_call(identity, "\x01", 1);
	check(p != NULL && gate_packet_content_size(p) == 36, "identity: instance id");
	p = gate_service_call(catalog, "json", 4);
	check(p != NULL && gate_packet_content_size(p) > 0, "catalog reply");
	// The reply lives in the helpers' buffer until the next receive: keep a copy.
	static char json[4096];
	size_t jsonlen = p ? gate_packet_content_size(p) : 0;
	check(jsonlen <= sizeof json, "catalog size");
	for (size_t i = 0; i < jsonlen && i < sizeof json; i++)
		json[i] = ((const char *) gate_packet_content(p))[i];

	struct gate_origin out;
	check(gate_origin_accept(&out) == 0, "origin accept");
	check(gate_origin_write(&out, json, jsonlen) == 0, "origin write");
	check(gate_origin_close(&out) == 0, "origin close");
	gate_debug("errors ", errors, "\n");
	return errors;
}
