/*
 * gate-endpoint.h — serve HTTP requests from a Gate program through the
 * `endpoint` service (docs/services.md "endpoint").
 *
 * When the server enables endpoints (endpoint.enabled), a program of an
 * authenticated principal may listen: requests to
 * /gate-0/endpoint/<instance-id>/... then arrive as streams.  Each stream's
 * input is a request head (struct gate_endpoint_request_head, then method,
 * target and headers) followed by the request body; its output is a response
 * head (struct gate_endpoint_response_head, then headers) followed by the
 * response body.  Flow control and the close handshake are the origin
 * service's (FLOW/DATA, abi.md §11).
 *
 * These helpers serve one request at a time and block:
 *
 *     static struct gate_endpoint ep;
 *     static char buf[65536];
 *     if (gate_endpoint_discover(&ep) != 0) ... not available ...
 *     for (;;) {
 *         struct gate_endpoint_request req;
 *         if (gate_endpoint_accept(&ep, &req, buf, sizeof buf) != 0) ...
 *         gate_endpoint_respond(&ep, 200, headers, body, body_len);
 *     }
 *
 * They use the endpoint service's packets only: packets of other services
 * received meanwhile are dropped, so a program that also uses other services
 * must run its own loop (the formats are in docs/services.md).
 * Needs gate.h (freestanding, no libc).
 */

#ifndef GATE_ENDPOINT_H
#define GATE_ENDPOINT_H

#include <gate.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GATE_ENDPOINT_SERVICE_NAME "endpoint"

/* Accept reply errors (negated by gate_endpoint_accept). */
#define GATE_ENDPOINT_ERROR_ID_TAKEN 1 /* another principal's instance listens under this id */

#define GATE_ENDPOINT_MAX_REQUEST_HEAD 65536
#define GATE_ENDPOINT_MAX_RESPONSE_HEAD 16384

/* Request head, as the first bytes of a request stream (little-endian).
 * Followed by method_len bytes of method, target_len bytes of target (the
 * path and query after /gate-0/endpoint/<id>, as the client sent them,
 * starting with '/'), and header_count headers, each
 * { u16 name_len; u16 value_len; name; value } with a lower-case name. */
struct gate_endpoint_request_head {
	uint32_t size; /* of the whole head, this struct included */
	uint16_t method_len;
	uint16_t header_count;
	uint32_t target_len;
	uint32_t reserved;
	uint64_t body_size; /* Content-Length; the body follows the head */
};

/* Response head, the first bytes the program writes: followed by
 * header_count headers as above.  Status 200..599.  Content-Length,
 * Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer,
 * Proxy-Connection and Gate-* are the server's: sending them (or a malformed
 * head) is an ABI violation. */
struct gate_endpoint_response_head {
	uint32_t size; /* of the whole head, this struct included: 8..16384 */
	uint16_t status;
	uint16_t header_count;
};

GATE_STATIC_ASSERT_(sizeof(struct gate_endpoint_request_head) == 24, "gate_endpoint_request_head layout");
GATE_STATIC_ASSERT_(sizeof(struct gate_endpoint_response_head) == 8, "gate_endpoint_response_head layout");

/* One endpoint connection of the program. */
struct gate_endpoint {
	int16_t code;       /* service code */
	int32_t stream;     /* request being served, or -1 */
	int64_t credit;     /* response bytes we may still send */
	bool write_closed;  /* the server takes no more response bytes (FLOW 0) */
	bool read_eof;      /* the request stream ended */
	bool started;       /* set when an io call reported a start or resume (clear it yourself) */
	int32_t orphans[8]; /* streams we closed without serving them (restored ones) */
	uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));
};

/* A received request; the pointers point into the caller's buffer. */
struct gate_endpoint_request {
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	uint16_t header_count;
	const uint8_t *headers_; /* header_count entries: use gate_endpoint_header() */
	const char *body;
	size_t body_len;    /* bytes of the body in the buffer */
	uint64_t body_size; /* declared (Content-Length) */
	bool truncated;     /* the body did not fit in the buffer, or the request was cut off */
};

struct gate_endpoint_header {
	const char *name;  /* NUL-terminated */
	const char *value; /* NUL-terminated */
};

/* ------------------------------------------------------------------------ */

static inline bool gate_endpoint_streq_(const char *a, size_t alen, const char *b)
{
	size_t i = 0;
	for (; i < alen; i++)
		if (b[i] == '\0' || a[i] != b[i])
			return false;
	return b[i] == '\0';
}

/* Whether the request's method is `method`. */
static inline bool gate_endpoint_method_is(const struct gate_endpoint_request *r, const char *method)
{
	return gate_endpoint_streq_(r->method, r->method_len, method);
}

/* Finds a request header by its lower-case name; its value and length, or NULL. */
static inline const char *gate_endpoint_header(const struct gate_endpoint_request *r, const char *name, size_t *len)
{
	const uint8_t *p = r->headers_;
	for (uint16_t i = 0; i < r->header_count; i++) {
		uint16_t nl = (uint16_t) (p[0] | p[1] << 8);
		uint16_t vl = (uint16_t) (p[2] | p[3] << 8);
		if (gate_endpoint_streq_((const char *) p + 4, nl, name)) {
			*len = vl;
			return (const char *) p + 4 + nl;
		}
		p += 4 + nl + vl;
	}
	return NULL;
}

/* Receives one packet, noting started/resumed in ep->started. */
static inline struct gate_packet *gate_endpoint_recv_(struct gate_endpoint *ep)
{
	size_t offset = 0;
	for (;;) {
		size_t want = GATE_PACKET_HEADER_SIZE;
		if (offset >= GATE_PACKET_HEADER_SIZE) {
			uint32_t size = ((const struct gate_packet *) ep->recv_buf)->size;
			if (size < GATE_PACKET_HEADER_SIZE || size > GATE_MAX_RECV_SIZE)
				gate_exit(1);
			want = gate_align_packet(size);
			if (offset >= want)
				return (struct gate_packet *) ep->recv_buf;
		}
		struct gate_iovec iov = {ep->recv_buf + offset, want - offset};
		size_t n = 0;
		uint64_t flags = 0;
		gate_io(&iov, 1, &n, NULL, 0, NULL, GATE_IO_WAIT, &flags);
		if (flags & GATE_IO_FLAG_STARTED)
			ep->started = true;
		offset += n;
	}
}

static inline void gate_endpoint_send_flow_(struct gate_endpoint *ep, int32_t id, int32_t value)
{
	struct {
		struct gate_packet header;
		struct gate_flow flow;
	} p = {
		.header = {.size = sizeof p, .code = ep->code, .domain = GATE_PACKET_DOMAIN_FLOW},
		.flow = {.id = id, .value = value},
	};
	gate_send_packet(&p.header);
}

static inline void gate_endpoint_send_eof_(struct gate_endpoint *ep, int32_t id)
{
	struct gate_data_packet p = {
		.header = {.size = GATE_DATA_HEADER_SIZE, .code = ep->code, .domain = GATE_PACKET_DOMAIN_DATA},
		.id = id,
	};
	gate_send_packet(&p.header);
}

/* A FLOW or DATA packet for a stream other than the current one: a stream
 * restored from a snapshot (its client is gone).  It is closed from our side
 * once; the server then forgets it. */
static inline void gate_endpoint_orphan_(struct gate_endpoint *ep, int32_t id)
{
	for (int i = 0; i < 8; i++)
		if (ep->orphans[i] == id)
			return;
	for (int i = 0; i < 8; i++) {
		if (ep->orphans[i] < 0) {
			ep->orphans[i] = id;
			gate_endpoint_send_flow_(ep, id, 0);
			gate_endpoint_send_eof_(ep, id);
			return;
		}
	}
	gate_exit(1); /* more than 8 orphaned streams at once */
}

/* Handles a packet of the endpoint service (FLOW/DATA of streams); returns
 * the DATA payload length for the current stream via *data (NULL if none). */
static inline void gate_endpoint_handle_(struct gate_endpoint *ep, const struct gate_packet *p, const char **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	unsigned domain = gate_packet_domain(p);
	if (domain == GATE_PACKET_DOMAIN_FLOW) {
		const struct gate_flow_packet *f = (const void *) p;
		for (uint32_t i = 0; i < (p->size - GATE_PACKET_HEADER_SIZE) / sizeof(struct gate_flow); i++) {
			int32_t id = f->flows[i].id;
			if (id != ep->stream) {
				gate_endpoint_orphan_(ep, id);
			} else if (f->flows[i].value > 0) {
				ep->credit += f->flows[i].value;
			} else if (f->flows[i].value == 0) {
				ep->write_closed = true;
			}
		}
	} else if (domain == GATE_PACKET_DOMAIN_DATA) {
		const struct gate_data_packet *d = (const void *) p;
		if (d->id != ep->stream) {
			gate_endpoint_orphan_(ep, d->id);
			return;
		}
		size_t n = p->size - GATE_DATA_HEADER_SIZE;
		if (n == 0)
			ep->read_eof = true;
		*data = d->data;
		*len = n;
	}
}

static inline int gate_endpoint_respond(struct gate_endpoint *ep, uint16_t status, const struct gate_endpoint_header *headers, size_t count, const void *body, size_t len);

/* Uses an endpoint service the program discovered itself under `code`. */
static inline void gate_endpoint_init(struct gate_endpoint *ep, int16_t code)
{
	ep->code = code;
	ep->stream = -1;
	ep->credit = 0;
	ep->write_closed = false;
	ep->read_eof = false;
	ep->started = false;
	for (int i = 0; i < 8; i++)
		ep->orphans[i] = -1;
}

/* Discovers the endpoint service as the program's only service (code 0).
 * Returns 0, or -1 if the server does not offer it. */
static inline int gate_endpoint_discover(struct gate_endpoint *ep)
{
	union {
		struct gate_service_name_packet p;
		uint8_t bytes[10 + 9];
	} req = {.p = {
		.header = {.size = sizeof req.bytes, .code = GATE_PACKET_CODE_SERVICES, .domain = GATE_PACKET_DOMAIN_CALL},
		.count = 1,
	}};
	for (int i = 0; i < 9; i++)
		req.p.names[i] = "\x08" "endpoint"[i];
	gate_endpoint_init(ep, 0);
	gate_send_packet(&req.p.header);
	for (;;) {
		struct gate_packet *p = gate_endpoint_recv_(ep);
		if (p->code != GATE_PACKET_CODE_SERVICES || gate_packet_domain(p) != GATE_PACKET_DOMAIN_CALL)
			continue;
		const struct gate_service_state_packet *r = (const void *) p;
		return (p->size >= 11 && r->count == 1 && (r->states[0] & GATE_SERVICE_STATE_AVAIL)) ? 0 : -1;
	}
}

/* Waits for the next request (the first call starts listening) and reads it
 * into buf: its head, and as much of its body as fits (the rest is read and
 * dropped: req->truncated).  Returns 0, -GATE_ENDPOINT_ERROR_* if the
 * service refused, or -1 if the request's head is unusable (it is then
 * answered with 400 and closed; accept again). */
static inline int gate_endpoint_accept(struct gate_endpoint *ep, struct gate_endpoint_request *req, char *buf, size_t bufsize)
{
	struct gate_packet call = {.size = sizeof call, .code = ep->code, .domain = GATE_PACKET_DOMAIN_CALL};
	gate_send_packet(&call);
	for (;;) {
		struct gate_packet *p = gate_endpoint_recv_(ep);
		if (p->code != ep->code)
			continue;
		if (gate_packet_domain(p) == GATE_PACKET_DOMAIN_CALL) {
			const int32_t *reply = (const int32_t *) (p + 1);
			if (p->size != 16)
				gate_exit(1);
			if (reply[1] != 0)
				return -reply[1];
			ep->stream = reply[0];
			for (int i = 0; i < 8; i++)
				if (ep->orphans[i] == ep->stream)
					ep->orphans[i] = -1; /* the id is free again */
			break;
		}
		const char *data;
		size_t len;
		gate_endpoint_handle_(ep, p, &data, &len);
	}
	ep->credit = 0;
	ep->write_closed = false;
	ep->read_eof = false;

	/* Everything fits in the buffer's worth of credit; past it, more credit
	 * is granted only to read the rest and drop it. */
	size_t got = 0;
	bool truncated = false;
	int32_t window = bufsize > 0x40000000 ? 0x40000000 : (int32_t) bufsize;
	gate_endpoint_send_flow_(ep, ep->stream, window);
	while (!ep->read_eof) {
		struct gate_packet *p = gate_endpoint_recv_(ep);
		if (p->code != ep->code)
			continue;
		const char *data;
		size_t len;
		gate_endpoint_handle_(ep, p, &data, &len);
		if (data == NULL || len == 0)
			continue;
		size_t keep = len <= bufsize - got ? len : bufsize - got;
		for (size_t i = 0; i < keep; i++)
			buf[got + i] = data[i];
		got += keep;
		if (keep < len || got == bufsize) {
			truncated = true;
			gate_endpoint_send_flow_(ep, ep->stream, (int32_t) (len > 4096 ? len : 4096));
		}
	}

	const struct gate_endpoint_request_head *h = (const void *) buf;
	if (got < sizeof *h || h->size < sizeof *h || h->size > got ||
	    sizeof *h + (size_t) h->method_len + h->target_len > h->size) {
		/* Cut off before its head was complete (e.g. restored after a suspension). */
		req->truncated = true;
		gate_endpoint_respond(ep, 400, NULL, 0, NULL, 0);
		return -1;
	}
	req->method = buf + sizeof *h;
	req->method_len = h->method_len;
	req->target = req->method + h->method_len;
	req->target_len = h->target_len;
	req->header_count = h->header_count;
	req->headers_ = (const uint8_t *) req->target + h->target_len;
	req->body = buf + h->size;
	req->body_len = got - h->size;
	req->body_size = h->body_size;
	req->truncated = truncated || req->body_len < h->body_size;
	return 0;
}

/* Sends response bytes as credit allows (dropped once the server takes no more). */
static inline void gate_endpoint_write_(struct gate_endpoint *ep, const char *data, size_t len)
{
	static union {
		struct gate_data_packet p;
		uint8_t bytes[GATE_MAX_SEND_SIZE];
	} out;
	while (len > 0 && !ep->write_closed) {
		if (ep->credit <= 0) {
			struct gate_packet *p = gate_endpoint_recv_(ep);
			if (p->code == ep->code) {
				const char *d;
				size_t l;
				gate_endpoint_handle_(ep, p, &d, &l);
			}
			continue;
		}
		size_t n = len;
		if (n > (size_t) ep->credit)
			n = (size_t) ep->credit;
		if (n > GATE_MAX_SEND_SIZE - GATE_DATA_HEADER_SIZE)
			n = GATE_MAX_SEND_SIZE - GATE_DATA_HEADER_SIZE;
		out.p.header = (struct gate_packet){.size = (uint32_t) (GATE_DATA_HEADER_SIZE + n), .code = ep->code, .domain = GATE_PACKET_DOMAIN_DATA};
		out.p.id = ep->stream;
		out.p.note = 0;
		for (size_t i = 0; i < n; i++)
			out.p.data[i] = data[i];
		gate_send_packet(&out.p.header);
		ep->credit -= (int64_t) n;
		data += n;
		len -= n;
	}
}

/* Closes the current stream without (more of) an answer and waits until the
 * server has let go of it.  A request that got no response head is answered
 * 502 by the server. */
static inline void gate_endpoint_close(struct gate_endpoint *ep)
{
	if (ep->stream < 0)
		return;
	gate_endpoint_send_flow_(ep, ep->stream, 0);
	gate_endpoint_send_eof_(ep, ep->stream);
	while (!ep->write_closed || !ep->read_eof) {
		struct gate_packet *p = gate_endpoint_recv_(ep);
		if (p->code != ep->code)
			continue;
		const char *d;
		size_t l;
		gate_endpoint_handle_(ep, p, &d, &l);
	}
	ep->stream = -1;
}

/* Answers the accepted request: status, headers (count entries), body, and
 * closes the stream (waiting until the server has let go of it).  Returns 0,
 * or -1 if the head would not fit (nothing is sent; answer again). */
static inline int gate_endpoint_respond(struct gate_endpoint *ep, uint16_t status, const struct gate_endpoint_header *headers, size_t count, const void *body, size_t len)
{
	static char head[GATE_ENDPOINT_MAX_RESPONSE_HEAD];
	size_t at = sizeof(struct gate_endpoint_response_head);
	for (size_t i = 0; i < count; i++) {
		size_t nl = gate_strlen_(headers[i].name);
		size_t vl = gate_strlen_(headers[i].value);
		if (at + 4 + nl + vl > sizeof head || nl > 0xffff || vl > 0xffff)
			return -1;
		head[at] = (char) nl;
		head[at + 1] = (char) (nl >> 8);
		head[at + 2] = (char) vl;
		head[at + 3] = (char) (vl >> 8);
		for (size_t j = 0; j < nl; j++)
			head[at + 4 + j] = headers[i].name[j];
		for (size_t j = 0; j < vl; j++)
			head[at + 4 + nl + j] = headers[i].value[j];
		at += 4 + nl + vl;
	}
	struct gate_endpoint_response_head *h = (void *) head;
	h->size = (uint32_t) at;
	h->status = status;
	h->header_count = (uint16_t) count;
	gate_endpoint_write_(ep, head, at);
	gate_endpoint_write_(ep, (const char *) body, len);
	gate_endpoint_close(ep);
	return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* GATE_ENDPOINT_H */
