/*
 * gate-localhost.h — HTTP requests to the operator's own web service through
 * the `gate.computer/localhost` service (enabled on a server by
 * `service.localhost.addr`).
 *
 *     #include <gate-localhost.h>
 *
 *     struct gate_localhost_response res;
 *     if (gate_localhost_request("GET", "//example/path?q=1", NULL, NULL, 0, &res) == 0)
 *         ... res.status_code, res.content_type (res.content_type_len), res.body (res.body_len)
 *
 * The uri must not be absolute; its host part (no port) becomes the Host
 * header, its path and query go to the configured server.  The service
 * answers 400 for a bad uri and 502 when the server cannot be reached or its
 * reply does not fit in a packet.  Only Content-Type passes, either way.
 *
 * The request and the reply are FlatBuffers (the original's
 * localhost/localhost.fbs); this header encodes and decodes the few tables
 * itself, so no FlatBuffers library is needed.
 */

#ifndef GATE_LOCALHOST_H
#define GATE_LOCALHOST_H

#include "gate-service.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GATE_LOCALHOST_SERVICE "gate.computer/localhost"

struct gate_localhost_response {
	uint16_t status_code;
	const char *content_type; /* not NUL-terminated; NULL if none */
	size_t content_type_len;
	const uint8_t *body; /* NULL if empty */
	size_t body_len;
};

/* Little-endian stores and loads (wasm is little-endian; these avoid
 * unaligned access in the buffers). */
static inline void gate_lh_put32_(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static inline void gate_lh_put16_(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}

static inline uint32_t gate_lh_get32_(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static inline uint16_t gate_lh_get16_(const uint8_t *p)
{
	return (uint16_t) (p[0] | p[1] << 8);
}

/* Appends a vector (u32 length, bytes, a NUL for strings, padding to 4) at
 * *end and points the uoffset at `field` to it. */
static inline void gate_lh_vector_(uint8_t *buf, size_t *end, size_t field, const void *data, size_t len, bool string)
{
	size_t at = *end;
	gate_lh_put32_(buf + field, (uint32_t) (at - field));
	gate_lh_put32_(buf + at, (uint32_t) len);
	for (size_t i = 0; i < len; i++)
		buf[at + 4 + i] = ((const uint8_t *) data)[i];
	size_t n = 4 + len + (string ? 1 : 0);
	for (size_t i = 4 + len; i < ((n + 3) & ~(size_t) 3); i++)
		buf[at + i] = 0;
	*end = at + ((n + 3) & ~(size_t) 3);
}

/* Encodes Call{function: Request{method, uri, content_type, body}} into buf
 * (at least 56 + the strings and body + 16 bytes).  Returns its size. */
static inline size_t gate_localhost_encode_call(uint8_t *buf, const char *method, const char *uri, const char *content_type, const void *body, size_t body_len)
{
	/* 0: root offset; 4: Call's vtable; 12: Call {soffset, function, function_type};
	 * 24: Request's vtable; 36: Request {soffset, method, uri, content_type, body};
	 * 56: the vectors. */
	static const uint8_t head[56] = {
		12, 0, 0, 0,                            /* root: Call at 12 */
		8, 0, 12, 0, 8, 0, 4, 0,                /* vtable: 8 bytes, table 12, type @8, function @4 */
		8, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0,    /* Call: vtable at 12-8, function at 16+20, type Request */
		12, 0, 20, 0, 4, 0, 8, 0, 12, 0, 16, 0, /* vtable: 12 bytes, table 20, fields @4 @8 @12 @16 */
		12, 0, 0, 0,                            /* Request: vtable at 36-12 */
	};
	for (size_t i = 0; i < sizeof head; i++)
		buf[i] = head[i];
	for (size_t i = 40; i < 56; i++)
		buf[i] = 0;
	size_t end = 56;
	gate_lh_vector_(buf, &end, 40, method, gate_strlen_(method), true);
	gate_lh_vector_(buf, &end, 44, uri, gate_strlen_(uri), true);
	if (content_type != NULL && content_type[0] != '\0')
		gate_lh_vector_(buf, &end, 48, content_type, gate_strlen_(content_type), true);
	else
		gate_lh_put16_(buf + 24 + 8, 0); /* absent: no offset in the vtable */
	if (body_len > 0)
		gate_lh_vector_(buf, &end, 52, body, body_len, false);
	else
		gate_lh_put16_(buf + 24 + 10, 0);
	return end;
}

/* Position of field `id` of the table at `table` in buf[0..size), 0 if absent or malformed. */
static inline size_t gate_lh_field_(const uint8_t *buf, size_t size, size_t table, unsigned id)
{
	if (table + 4 > size)
		return 0;
	int32_t soffset = (int32_t) gate_lh_get32_(buf + table);
	int64_t vtable = (int64_t) table - soffset;
	if (vtable < 0 || (size_t) vtable + 4 > size)
		return 0;
	uint16_t vsize = gate_lh_get16_(buf + vtable);
	size_t slot = 4 + 2 * (size_t) id;
	if (slot + 2 > vsize || (size_t) vtable + slot + 2 > size)
		return 0;
	uint16_t off = gate_lh_get16_(buf + vtable + slot);
	return off == 0 || table + off + 4 > size ? 0 : table + off;
}

/* The vector a uoffset field points to: its bytes and length (0 if malformed). */
static inline const uint8_t *gate_lh_vector_at_(const uint8_t *buf, size_t size, size_t field, size_t *len)
{
	*len = 0;
	if (field == 0)
		return NULL;
	size_t at = field + gate_lh_get32_(buf + field);
	if (at < field || at + 4 > size)
		return NULL;
	size_t n = gate_lh_get32_(buf + at);
	if (n > size - at - 4)
		return NULL;
	*len = n;
	return n > 0 ? buf + at + 4 : NULL;
}

/* Decodes a Response.  Returns 0, or -1 if the buffer is malformed or empty
 * (the service's reply to a call it did not understand). */
static inline int gate_localhost_decode_response(const uint8_t *buf, size_t size, struct gate_localhost_response *res)
{
	*res = (struct gate_localhost_response){0};
	if (size < 8)
		return -1;
	size_t table = gate_lh_get32_(buf);
	if (table + 4 > size)
		return -1;
	size_t status = gate_lh_field_(buf, size, table, 0);
	if (status != 0)
		res->status_code = gate_lh_get16_(buf + status);
	res->content_type = (const char *) gate_lh_vector_at_(buf, size, gate_lh_field_(buf, size, table, 1), &res->content_type_len);
	res->body = gate_lh_vector_at_(buf, size, gate_lh_field_(buf, size, table, 2), &res->body_len);
	return 0;
}

/* Makes one request and waits for its response (`res` points into the
 * helpers' receive buffer: valid until the next receive).  content_type may
 * be NULL.  Returns 0, or -1 if the service is not available here, the
 * request is too large for a packet, or the reply is malformed. */
static inline int gate_localhost_request(const char *method, const char *uri, const char *content_type, const void *body, size_t body_len, struct gate_localhost_response *res)
{
	static int code = -2;
	static uint8_t call[GATE_MAX_SEND_SIZE - GATE_PACKET_HEADER_SIZE];
	if (code == -2)
		code = gate_service_discover(GATE_LOCALHOST_SERVICE);
	if (code < 0)
		return -1;
	size_t strings = gate_strlen_(method) + gate_strlen_(uri) + (content_type ? gate_strlen_(content_type) : 0);
	if (strings + body_len + 56 + 3 * 8 + 8 > sizeof call)
		return -1;
	size_t size = gate_localhost_encode_call(call, method, uri, content_type, body, body_len);
	const struct gate_packet *reply = gate_service_call(code, call, size);
	if (reply == NULL)
		return -1;
	return gate_localhost_decode_response((const uint8_t *) gate_packet_content(reply), gate_packet_content_size(reply), res);
}

#ifdef __cplusplus
}
#endif

#endif /* GATE_LOCALHOST_H */
