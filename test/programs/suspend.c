// suspend: long-running programs for suspend/resume/snapshot tests
// (tests.md §2.6).
//
// Imports: env.__gate_io_65536, env.__wasi_fd_write.
// Exports: memory, loop, loop2.

#include <gate.h>

#define EXPORT(name) __attribute__((export_name(name)))

// Discovers origin, test and _nonexistent (count 3, size 8+2+25 = 35, 40 on
// the wire) without reading the response, so that a snapshot has discovered
// services (some unavailable) and unread input.  Then loops forever: a debug
// line per round and 1 000 000 io calls with nothing to transfer and timeout
// 0, each a cheap suspension point.  (The log text says "suspend.cpp" as in
// the original program.)
EXPORT("loop")
void loop(void)
{
	static const char names[] = "\x06origin\x04test\x0c_nonexistent";
	union {
		struct gate_service_name_packet p;
		uint8_t bytes[offsetof(struct gate_service_name_packet, names) + sizeof names - 1];
	} req;

	req.p.header = (struct gate_packet){
		.size = sizeof req.bytes, // 35
		.code = GATE_PACKET_CODE_SERVICES,
		.domain = GATE_PACKET_DOMAIN_CALL,
	};
	req.p.count = 3;
	for (size_t i = 0; i < sizeof names - 1; i++)
		req.p.names[i] = names[i];
	gate_send_packet(&req.p.header);

	for (uint64_t i = 0;; i++) {
		gate_debug("suspend.cpp running: ");
		gate_debug_uint(i);
		gate_debug("\n");

		for (int j = 0; j < 1000000; j++)
			gate_io(NULL, 0, NULL, NULL, 0, NULL, 0, NULL);
	}
}

static volatile uint64_t memory_value; // lives in linear memory

// Keeps one counter in a local (a wasm local, i.e. on the call stack) and one
// in linear memory, updating both across io "barrier" calls; returns 1 if
// they ever disagree, e.g. after a resume that lost part of the state.
EXPORT("loop2")
int loop2(void)
{
	uint64_t local_value = memory_value;

	for (;;) {
		local_value++;
		memory_value++;
		gate_io(NULL, 0, NULL, NULL, 0, NULL, 0, NULL);
		if (local_value != memory_value) {
			gate_debug("loop2: mismatch\n");
			return 1;
		}
	}
}
