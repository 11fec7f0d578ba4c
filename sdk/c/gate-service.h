/*
 * gate-service.h — speak to Gate services by name, on top of gate.h.
 *
 * Header-only and freestanding like gate.h.  A program that calls a service:
 *
 *     #include <gate-service.h>
 *
 *     int code = gate_service_discover("gate.computer/localhost");
 *     if (code < 0) gate_exit(1);                       // not available here
 *     const struct gate_packet *reply = gate_service_call(code, req, reqlen);
 *     // gate_packet_content(reply), gate_packet_content_size(reply)
 *
 * and one that writes to the client at the origin (its `gate call` stdout,
 * HTTP response or websocket):
 *
 *     struct gate_origin out;
 *     gate_origin_accept(&out);                         // waits for a client
 *     gate_origin_write(&out, "hello\n", 6);            // within origin's credit
 *     gate_origin_close(&out);                          // all delivered
 *
 * The helpers are synchronous: each sends what it has to and receives until
 * the packet it waits for arrives.  Packets for other purposes that arrive
 * meanwhile go to the handler set with gate_service_set_handler (dropped
 * without one).  Replies are matched by service code; a service answering
 * calls out of order (with `index`) should be called one call at a time with
 * these helpers.  Discovery must go through gate_service_discover only (codes
 * are positions in the discovery order).  Not thread-safe (Gate programs
 * have one thread).
 */

#ifndef GATE_SERVICE_H
#define GATE_SERVICE_H

#include "gate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Handles a packet the helpers received while waiting for something else. */
typedef void (*gate_packet_handler_t)(const struct gate_packet *packet, void *arg);

/* The helpers' receive buffer: the returned packets live here until the next
 * receive.  One per program (a static in this header). */
static uint8_t gate_service_buf_[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));
static gate_packet_handler_t gate_service_handler_;
static void *gate_service_handler_arg_;

/* Where packets go that the helpers do not wait for (NULL: dropped). */
static inline void gate_service_set_handler(gate_packet_handler_t handler, void *arg)
{
	gate_service_handler_ = handler;
	gate_service_handler_arg_ = arg;
}

/* Content of a packet (after the header) and its size. */
static inline const void *gate_packet_content(const struct gate_packet *packet)
{
	return (const uint8_t *) packet + GATE_PACKET_HEADER_SIZE;
}

static inline size_t gate_packet_content_size(const struct gate_packet *packet)
{
	return packet->size - GATE_PACKET_HEADER_SIZE;
}

/* Sends one packet made of a header and `size` bytes of content (not copied),
 * padding included.  Blocks until everything has been transferred.  Returns
 * 0, or -1 without sending if the packet would exceed GATE_MAX_SEND_SIZE. */
static inline int gate_service_send(int16_t code, unsigned domain, const void *content, size_t size)
{
	static const uint8_t zeros[GATE_PACKET_ALIGNMENT] = {0};
	if (size > GATE_MAX_SEND_SIZE - GATE_PACKET_HEADER_SIZE)
		return -1;
	struct gate_packet header = {.size = (uint32_t) (GATE_PACKET_HEADER_SIZE + size), .code = code, .domain = (uint8_t) domain};
	size_t total = GATE_ALIGN_PACKET(header.size);
	const struct {
		const void *base;
		size_t len;
	} parts[3] = {{&header, GATE_PACKET_HEADER_SIZE}, {content, size}, {zeros, total - header.size}};
	size_t sent = 0;
	while (sent < total) {
		struct gate_iovec iov[3];
		int n = 0;
		size_t at = 0;
		for (int i = 0; i < 3; i++) {
			size_t end = at + parts[i].len;
			if (sent < end) {
				size_t skip = sent > at ? sent - at : 0;
				iov[n].iov_base = (uint8_t *) parts[i].base + skip;
				iov[n].iov_len = parts[i].len - skip;
				n++;
			}
			at = end;
		}
		size_t nsent = 0;
		gate_io(NULL, 0, NULL, iov, n, &nsent, GATE_IO_WAIT, NULL);
		sent += nsent;
	}
	return 0;
}

/* Receives the next packet (blocking), or NULL if its size is invalid. */
static inline const struct gate_packet *gate_service_recv(void)
{
	return gate_recv_packet(gate_service_buf_);
}

/* Receives until a packet with `code` in `domain` arrives and returns it;
 * others go to the handler.  NULL if a received packet has an invalid size. */
static inline const struct gate_packet *gate_service_wait(int16_t code, unsigned domain)
{
	for (;;) {
		const struct gate_packet *p = gate_service_recv();
		if (p == NULL)
			return NULL;
		if (p->code == code && gate_packet_domain(p) == domain)
			return p;
		if (gate_service_handler_ != NULL)
			gate_service_handler_(p, gate_service_handler_arg_);
	}
}

/* Discovers one service by name (1..127 bytes).  Returns its code (>= 0) if
 * the host provides it, or -1 if it does not (or the name is invalid). */
static inline int gate_service_discover(const char *name)
{
	size_t len = gate_strlen_(name);
	if (len == 0 || len > GATE_SERVICE_NAME_MAX)
		return -1;
	uint8_t req[2 + 1 + GATE_SERVICE_NAME_MAX];
	req[0] = 1; /* u16 count = 1 */
	req[1] = 0;
	req[2] = (uint8_t) len;
	for (size_t i = 0; i < len; i++)
		req[3 + i] = (uint8_t) name[i];
	if (gate_service_send(GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL, req, 3 + len) != 0)
		return -1;
	const struct gate_packet *p = gate_service_wait(GATE_PACKET_CODE_SERVICES, GATE_PACKET_DOMAIN_CALL);
	if (p == NULL || p->size < 10)
		return -1;
	/* The reply has a state for every service discovered so far: ours is last. */
	const struct gate_service_state_packet *r = (const struct gate_service_state_packet *) p;
	if (r->count == 0 || p->size < 10u + r->count)
		return -1;
	int code = r->count - 1;
	return (r->states[code] & GATE_SERVICE_STATE_AVAIL) ? code : -1;
}

/* Calls a service: sends a CALL with `size` bytes of content and waits for
 * its reply.  Returns the reply packet (content: gate_packet_content), valid
 * until the next receive; NULL if the call could not be sent or a received
 * packet has an invalid size. */
static inline const struct gate_packet *gate_service_call(int code, const void *content, size_t size)
{
	if (gate_service_send((int16_t) code, GATE_PACKET_DOMAIN_CALL, content, size) != 0)
		return NULL;
	return gate_service_wait((int16_t) code, GATE_PACKET_DOMAIN_CALL);
}

/* ------------------------------------------------------------------------ */
/* Writing to the client at the origin                                      */
/* ------------------------------------------------------------------------ */

/* One accepted origin stream that the program writes to (it reads nothing:
 * the receive side is closed at once). */
struct gate_origin {
	int16_t code;   /* the origin service's code */
	int32_t stream; /* stream id */
	int64_t credit; /* bytes origin lets us send now */
	bool closed;    /* origin sent FLOW {stream, 0}: the client is gone or has everything */
};

/* Takes FLOW credit from a packet of origin; ignores the rest (input ends). */
static inline void gate_origin_update_(struct gate_origin *o, const struct gate_packet *p)
{
	if (gate_packet_domain(p) != GATE_PACKET_DOMAIN_FLOW)
		return;
	const struct gate_flow_packet *f = (const struct gate_flow_packet *) p;
	size_t n = (p->size - GATE_PACKET_HEADER_SIZE) / sizeof(struct gate_flow);
	for (size_t i = 0; i < n; i++) {
		if (f->flows[i].id != o->stream)
			continue;
		if (f->flows[i].value > 0)
			o->credit += f->flows[i].value;
		else if (f->flows[i].value == 0)
			o->closed = true;
	}
}

/* Receives the next packet of origin and applies it; others go to the handler. */
static inline int gate_origin_step_(struct gate_origin *o)
{
	for (;;) {
		const struct gate_packet *p = gate_service_recv();
		if (p == NULL)
			return -1;
		if (p->code == o->code) {
			gate_origin_update_(o, p);
			return 0;
		}
		if (gate_service_handler_ != NULL)
			gate_service_handler_(p, gate_service_handler_arg_);
	}
}

/* Discovers origin (once per program) and waits for a client to connect.
 * Returns 0, or -1 if origin is not available or the accept failed. */
static inline int gate_origin_accept(struct gate_origin *o)
{
	static int code = -2;
	if (code == -2)
		code = gate_service_discover("origin");
	if (code < 0)
		return -1;
	*o = (struct gate_origin){.code = (int16_t) code};
	const struct gate_packet *p = gate_service_call(code, NULL, 0);
	if (p == NULL || p->size != 16)
		return -1;
	const int32_t *reply = (const int32_t *) gate_packet_content(p);
	if (reply[1] != 0)
		return -1;
	o->stream = reply[0];
	const struct gate_flow none = {.id = o->stream, .value = 0};
	return gate_service_send(o->code, GATE_PACKET_DOMAIN_FLOW, &none, sizeof none);
}

/* Writes `size` bytes, in DATA packets within origin's credit (waiting for
 * more as needed).  Returns 0, or -1 if the client stopped receiving. */
static inline int gate_origin_write(struct gate_origin *o, const void *data, size_t size)
{
	uint8_t chunk[4096];
	const uint8_t *src = (const uint8_t *) data;
	while (size > 0) {
		while (o->credit <= 0 && !o->closed)
			if (gate_origin_step_(o) != 0)
				return -1;
		if (o->closed)
			return -1;
		size_t n = size;
		if (n > sizeof chunk - 8)
			n = sizeof chunk - 8;
		if ((int64_t) n > o->credit)
			n = (size_t) o->credit;
		int32_t *head = (int32_t *) chunk; /* {i32 id, i32 note} */
		head[0] = o->stream;
		head[1] = 0;
		for (size_t i = 0; i < n; i++)
			chunk[8 + i] = src[i];
		if (gate_service_send(o->code, GATE_PACKET_DOMAIN_DATA, chunk, 8 + n) != 0)
			return -1;
		o->credit -= (int64_t) n;
		src += n;
		size -= n;
	}
	return 0;
}

/* Writes a NUL-terminated string. */
static inline int gate_origin_print(struct gate_origin *o, const char *s)
{
	return gate_origin_write(o, s, gate_strlen_(s));
}

/* Ends the stream and waits until origin confirms that the client has
 * everything (its FLOW {stream, 0}).  Returns 0, or -1 on a receive error. */
static inline int gate_origin_close(struct gate_origin *o)
{
	const int32_t end[2] = {o->stream, 0};
	if (gate_service_send(o->code, GATE_PACKET_DOMAIN_DATA, end, sizeof end) != 0)
		return -1;
	while (!o->closed)
		if (gate_origin_step_(o) != 0)
			return -1;
	return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* GATE_SERVICE_H */
