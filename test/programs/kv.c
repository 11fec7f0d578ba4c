// kv: a key-value store served over HTTP through the endpoint service
// (sdk/c/gate-endpoint.h), at /gate-0/endpoint/<instance-id>/...
//
//   GET /kv/KEY      200 with the value, or 404
//   PUT /kv/KEY      stores the body (204; 413 if it is over 4096 bytes)
//   DELETE /kv/KEY   204, or 404
//   GET /count       requests served so far, in decimal
//   GET /seed        16 hex digits of random bytes taken after the latest
//                    start or resume (random_get; a clone has its own)
//   GET /echo        200 with the request's method, target, x-test and
//                    authorization headers and body, one per line
//   GET /ignore      never answered (the stream is left open; the server
//                    gives up after endpoint.timeout)
//   GET /bad         a malformed response head (status 99): an ABI violation
//
// Imports: env.__gate_io_65536, env.__wasi_random_get, env.__wasi_fd_write,
// env.__wasi_proc_exit.  Exports: memory, _start.

#include <gate-endpoint.h>

#define KEYS 64
#define KEY_MAX 64
#define VALUE_MAX 4096

static struct gate_endpoint ep;
static char buf[VALUE_MAX + 8192];

static struct {
	bool used;
	uint32_t key_len;
	uint32_t value_len;
	char key[KEY_MAX];
	char value[VALUE_MAX];
} table[KEYS];

static uint64_t served;
static uint64_t seed;

static const struct gate_endpoint_header text[] = {{"Content-Type", "text/plain; charset=utf-8"}};

static bool eq(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static bool prefix(const char *s, size_t len, const char *p)
{
	size_t n = gate_strlen_(p);
	return len >= n && eq(s, n, p, n);
}

static int find(const char *key, size_t len)
{
	for (int i = 0; i < KEYS; i++)
		if (table[i].used && eq(table[i].key, table[i].key_len, key, len))
			return i;
	return -1;
}

static void answer(uint16_t status, const char *body, size_t len)
{
	gate_endpoint_respond(&ep, status, text, 1, body, len);
}

static void answer_str(uint16_t status, const char *s)
{
	answer(status, s, gate_strlen_(s));
}

static void kv(const struct gate_endpoint_request *r, const char *key, size_t key_len)
{
	int i = find(key, key_len);
	if (gate_endpoint_method_is(r, "GET")) {
		if (i < 0)
			return answer_str(404, "no such key\n");
		return answer(200, table[i].value, table[i].value_len);
	}
	if (gate_endpoint_method_is(r, "PUT")) {
		if (r->truncated || r->body_len > VALUE_MAX)
			return answer_str(413, "value too large\n");
		if (key_len == 0 || key_len > KEY_MAX)
			return answer_str(400, "bad key\n");
		if (i < 0)
			for (i = 0; i < KEYS && table[i].used; i++) {
			}
		if (i >= KEYS)
			return answer_str(507, "table full\n");
		table[i].used = true;
		table[i].key_len = (uint32_t) key_len;
		for (size_t j = 0; j < key_len; j++)
			table[i].key[j] = key[j];
		table[i].value_len = (uint32_t) r->body_len;
		for (size_t j = 0; j < r->body_len; j++)
			table[i].value[j] = r->body[j];
		return answer(204, NULL, 0);
	}
	if (gate_endpoint_method_is(r, "DELETE")) {
		if (i < 0)
			return answer_str(404, "no such key\n");
		table[i].used = false;
		return answer(204, NULL, 0);
	}
	static const struct gate_endpoint_header allow[] = {{"Allow", "GET, PUT, DELETE"}};
	gate_endpoint_respond(&ep, 405, allow, 1, NULL, 0);
}

static char out[VALUE_MAX + 8192];

static size_t append(size_t at, const char *s, size_t len)
{
	for (size_t i = 0; i < len && at < sizeof out; i++)
		out[at++] = s[i];
	return at;
}

static void serve(const struct gate_endpoint_request *r)
{
	const char *t = r->target;
	size_t n = r->target_len;
	if (prefix(t, n, "/kv/"))
		return kv(r, t + 4, n - 4);
	if (eq(t, n, "/count", 6)) {
		char digits[24];
		char *p = gate_format_uint_(digits + sizeof digits, served, 10);
		return answer(200, p, (size_t) (digits + sizeof digits - p));
	}
	if (eq(t, n, "/seed", 5)) {
		char digits[24];
		char *p = gate_format_uint_(digits + sizeof digits, seed, 16);
		return answer(200, p, (size_t) (digits + sizeof digits - p));
	}
	if (prefix(t, n, "/echo")) {
		size_t at = append(0, r->method, r->method_len);
		at = append(at, "\n", 1);
		at = append(at, r->target, r->target_len);
		at = append(at, "\n", 1);
		size_t len = 0;
		const char *v = gate_endpoint_header(r, "x-test", &len);
		if (v)
			at = append(at, v, len);
		at = append(at, "\n", 1);
		v = gate_endpoint_header(r, "authorization", &len);
		if (v)
			at = append(at, v, len);
		at = append(at, "\n", 1);
		at = append(at, r->body, r->body_len);
		return answer(200, out, at);
	}
	if (eq(t, n, "/ignore", 7)) {
		ep.stream = -1; // forgotten: its packets are now an orphan's, closed when they come
		return;
	}
	if (eq(t, n, "/bad", 4)) {
		struct gate_endpoint_response_head h = {.size = sizeof h, .status = 99, .header_count = 0};
		gate_endpoint_write_(&ep, (const char *) &h, sizeof h);
		gate_endpoint_close(&ep);
		return;
	}
	answer_str(404, "not found\n");
}

__attribute__((export_name("_start")))
void start(void)
{
	if (gate_endpoint_discover(&ep) != 0) {
		gate_debug("kv: the endpoint service is not available\n");
		gate_exit(1);
	}
	for (;;) {
		struct gate_endpoint_request r;
		int err = gate_endpoint_accept(&ep, &r, buf, sizeof buf);
		if (ep.started) {
			ep.started = false;
			if (gate_random_get(&seed, sizeof seed) != 0)
				seed = 0;
		}
		if (err < -1) {
			gate_debug("kv: cannot listen\n");
			gate_exit(1);
		}
		if (err != 0)
			continue;
		served++;
		serve(&r);
	}
}
