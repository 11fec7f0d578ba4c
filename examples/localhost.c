// localhost: asks the operator's web service for a page through the
// gate.computer/localhost service, and writes the status, the content type
// and the page to the client.
//
//     ./bin/gate-server -o service.localhost.addr=http://127.0.0.1:8080 &
//     ./bin/gate http://127.0.0.1:6473 call examples/localhost.wasm
//
// The request is GET //bogus/test: the web service at service.localhost.addr
// receives "GET /test" with "Host: bogus".  (`gate run` and gate-daemon have
// no localhost service unless configured: the program then says so.)

#include <gate-localhost.h>

__attribute__((export_name("_start")))
int start(void)
{
	struct gate_localhost_response res;
	if (gate_localhost_request("GET", "//bogus/test", NULL, NULL, 0, &res) != 0) {
		gate_debug("localhost: the service is not available\n");
		return 1;
	}

	// Format "<status> <content type>\n" before writing: the response lives
	// in the receive buffer, which accepting the client's stream reuses.
	static char out[65536];
	size_t n = 0;
	for (unsigned d = 10000; d > 0; d /= 10)
		if (res.status_code >= d || d == 1)
			out[n++] = (char) ('0' + res.status_code / d % 10);
	out[n++] = ' ';
	for (size_t i = 0; i < res.content_type_len && n < sizeof out; i++)
		out[n++] = res.content_type[i];
	out[n++] = '\n';
	for (size_t i = 0; i < res.body_len && n < sizeof out; i++)
		out[n++] = (char) res.body[i];

	struct gate_origin client;
	if (gate_origin_accept(&client) != 0 || gate_origin_write(&client, out, n) != 0 || gate_origin_close(&client) != 0)
		return 1;
	return 0;
}
