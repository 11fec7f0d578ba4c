// hello-service: calls the service "example.net/hello" of
// examples/hello-extension.mjs and sends its answer to the client.
//
//     ./bin/gate-server -o 'service.extensions=["./examples/hello-extension.mjs"]' &
//     ./bin/gate http://127.0.0.1:6473 call examples/hello-service.wasm
//
// gate-service.h does the packet work: discovery by name, the call, and the
// stream to the client.

#include <gate-service.h>

static char answer[1024];

__attribute__((export_name("_start")))
int start(void)
{
	int hello = gate_service_discover("example.net/hello");
	if (hello < 0) {
		gate_debug("hello-service: example.net/hello is not available (is the extension loaded?)\n");
		return 1;
	}

	const struct gate_packet *reply = gate_service_call(hello, "Gate", 4);
	if (reply == NULL || gate_packet_content_size(reply) > sizeof answer)
		return 1;
	size_t n = gate_packet_content_size(reply);
	for (size_t i = 0; i < n; i++) // the reply is overwritten by the next receive
		answer[i] = ((const char *) gate_packet_content(reply))[i];

	struct gate_origin client;
	if (gate_origin_accept(&client) != 0 || gate_origin_write(&client, answer, n) != 0 || gate_origin_close(&client) != 0)
		return 1;
	return 0;
}
