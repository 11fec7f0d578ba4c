/*
 * gate-peer.h: the `peer` service (docs/services.md "peer") for C programs.
 *
 * Programs on one gate-server join named groups, see each other join and
 * leave, send each other short messages, and open byte streams to each
 * other.  Include after gate.h; discover the service under the name "peer"
 * (it is available when the server enables it and the program runs for an
 * authenticated principal) and pass its code to these functions.
 *
 *   gate_peer_join(code, "chat", 0)        -> reply (i16 error), then a
 *                                            JOINED event per member
 *   gate_peer_receive(code, 16)            -> may receive 16 more messages
 *   gate_peer_send(code, "chat", peer, data, n)
 *   gate_peer_connect(code, "chat", peer, "text", 4)
 *                                          -> REQUEST event at the peer; when it
 *                                            connects back, both get CONNECTED
 *                                            with their own stream id
 *   gate_peer_flow(code, stream, n)        -> the peer may send n more bytes
 *   gate_peer_data(code, stream, data, n)  -> within the credit it granted
 *
 * Every call is answered, in order, with a CALL packet whose content is an
 * i16 error (GATE_PEER_ERROR_*; read it with gate_peer_reply_error).  Events
 * arrive as INFO packets (gate_peer_parse_event).
 */

#ifndef GATE_PEER_H
#define GATE_PEER_H

#include <gate.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GATE_PEER_OP_CONNECT 0
#define GATE_PEER_OP_JOIN 1
#define GATE_PEER_OP_LEAVE 2
#define GATE_PEER_OP_SEND 3
#define GATE_PEER_OP_RECEIVE 4

#define GATE_PEER_JOIN_SHARED 1 /* the group is shared across principals (if the server allows the name) */

#define GATE_PEER_ERROR_OK 0
#define GATE_PEER_ERROR_GROUP_NOT_FOUND 2 /* not a member of that group */
#define GATE_PEER_ERROR_PEER_NOT_FOUND 3
#define GATE_PEER_ERROR_SINGULARITY 4 /* that peer is you */
#define GATE_PEER_ERROR_ALREADY_CONNECTING 5
#define GATE_PEER_ERROR_ALREADY_CONNECTED 6
#define GATE_PEER_ERROR_ALREADY_JOINED 7
#define GATE_PEER_ERROR_NOT_PERMITTED 8 /* shared group not allowed by the server */
#define GATE_PEER_ERROR_LIMIT 9         /* too many groups, streams or members */
#define GATE_PEER_ERROR_BUSY 10         /* the peer has no message credit: not delivered */

#define GATE_PEER_EVENT_JOINED 1    /* peer joined (or was there when you joined) */
#define GATE_PEER_EVENT_LEFT 2      /* peer left; its requests to you are cancelled */
#define GATE_PEER_EVENT_REQUEST 3   /* peer asks to connect; data = its handshake */
#define GATE_PEER_EVENT_CONNECTED 4 /* stream = your id of the new stream; data = peer's handshake */
#define GATE_PEER_EVENT_MESSAGE 5   /* data = the message */
#define GATE_PEER_EVENT_RESET 6     /* you were suspended and are back: forget the group's peers and
                                       streams; status 0 = rejoined (JOINED events follow), else error */

/* DATA note of an end of stream the service sends because the peer is gone. */
#define GATE_PEER_NOTE_GONE (-1)

#define GATE_PEER_NAME_MAX 255

struct gate_peer_event {
	int32_t stream; /* CONNECTED: stream id; else -1 */
	uint8_t type;   /* GATE_PEER_EVENT_* */
	uint8_t status; /* RESET: error code */
	const char *group;
	size_t group_len;
	const char *peer; /* the peer's instance id */
	size_t peer_len;
	const uint8_t *data; /* handshake or message */
	size_t data_len;
};

/* Buffer the helpers build packets in (one packet at a time). */
static uint8_t gate_peer_buf_[GATE_MAX_SEND_SIZE] __attribute__((aligned(8)));

static inline size_t gate_peer_put_name_(size_t o, const void *s, size_t n)
{
	gate_peer_buf_[o++] = (uint8_t) n;
	for (size_t i = 0; i < n; i++)
		gate_peer_buf_[o + i] = ((const uint8_t *) s)[i];
	return o + n;
}

/* Starts a CALL to `code` with op; returns the content offset after the 8-byte op header. */
static inline size_t gate_peer_begin_(int16_t code, uint8_t op)
{
	for (size_t i = 0; i < 16; i++)
		gate_peer_buf_[i] = 0;
	struct gate_packet *p = (struct gate_packet *) gate_peer_buf_;
	p->code = code;
	p->domain = GATE_PACKET_DOMAIN_CALL;
	gate_peer_buf_[GATE_PACKET_HEADER_SIZE] = op;
	return GATE_PACKET_HEADER_SIZE + 8;
}

static inline int gate_peer_finish_(size_t size)
{
	((struct gate_packet *) gate_peer_buf_)->size = (uint32_t) size;
	return gate_send_packet((const struct gate_packet *) gate_peer_buf_);
}

/* Joins a group (flags: 0 or GATE_PEER_JOIN_SHARED).  Returns -1 if the name is too long. */
static inline int gate_peer_join(int16_t code, const char *group, uint8_t flags)
{
	size_t glen = gate_strlen_(group);
	if (glen == 0 || glen > GATE_PEER_NAME_MAX)
		return -1;
	size_t o = gate_peer_begin_(code, GATE_PEER_OP_JOIN);
	gate_peer_buf_[o++] = flags;
	return gate_peer_finish_(gate_peer_put_name_(o, group, glen));
}

static inline int gate_peer_leave(int16_t code, const char *group)
{
	size_t glen = gate_strlen_(group);
	if (glen == 0 || glen > GATE_PEER_NAME_MAX)
		return -1;
	return gate_peer_finish_(gate_peer_put_name_(gate_peer_begin_(code, GATE_PEER_OP_LEAVE), group, glen));
}

/* Lets `count` more messages be delivered to this program. */
static inline int gate_peer_receive(int16_t code, uint32_t count)
{
	size_t o = gate_peer_begin_(code, GATE_PEER_OP_RECEIVE);
	for (int i = 0; i < 4; i++)
		gate_peer_buf_[o + i] = (uint8_t) (count >> (8 * i));
	return gate_peer_finish_(o + 4);
}

/* Sends a message (peer: instance id as given by an event, `peer_len` bytes). */
static inline int gate_peer_send(int16_t code, const char *group, const char *peer, size_t peer_len, const void *data, size_t len)
{
	size_t glen = gate_strlen_(group);
	if (glen == 0 || glen > GATE_PEER_NAME_MAX || peer_len == 0 || peer_len > GATE_PEER_NAME_MAX ||
	    GATE_PACKET_HEADER_SIZE + 8 + 2 + glen + peer_len + len > GATE_MAX_SEND_SIZE)
		return -1;
	size_t o = gate_peer_put_name_(gate_peer_begin_(code, GATE_PEER_OP_SEND), group, glen);
	o = gate_peer_put_name_(o, peer, peer_len);
	for (size_t i = 0; i < len; i++)
		gate_peer_buf_[o + i] = ((const uint8_t *) data)[i];
	return gate_peer_finish_(o + len);
}

/* Asks to connect (or answers a REQUEST by connecting back). */
static inline int gate_peer_connect(int16_t code, const char *group, const char *peer, size_t peer_len, const void *handshake, size_t hs_len)
{
	size_t glen = gate_strlen_(group);
	if (glen == 0 || glen > GATE_PEER_NAME_MAX || peer_len == 0 || peer_len > GATE_PEER_NAME_MAX || hs_len > GATE_PEER_NAME_MAX)
		return -1;
	size_t o = gate_peer_put_name_(gate_peer_begin_(code, GATE_PEER_OP_CONNECT), group, glen);
	o = gate_peer_put_name_(o, peer, peer_len);
	return gate_peer_finish_(gate_peer_put_name_(o, handshake, hs_len));
}

/* FLOW {stream, value}: value > 0 grants more bytes, 0 stops receiving. */
static inline int gate_peer_flow(int16_t code, int32_t stream, int32_t value)
{
	struct {
		struct gate_packet header;
		struct gate_flow flow;
	} p = {
		.header = {.size = sizeof p, .code = code, .domain = GATE_PACKET_DOMAIN_FLOW},
		.flow = {.id = stream, .value = value},
	};
	return gate_send_packet(&p.header);
}

/* DATA on a stream (len 0: end of data). */
static inline int gate_peer_data(int16_t code, int32_t stream, const void *data, size_t len)
{
	if (len > GATE_MAX_SEND_SIZE - GATE_DATA_HEADER_SIZE)
		return -1;
	struct gate_data_packet *p = (struct gate_data_packet *) gate_peer_buf_;
	p->header = (struct gate_packet){.size = (uint32_t) (GATE_DATA_HEADER_SIZE + len), .code = code, .domain = GATE_PACKET_DOMAIN_DATA};
	p->id = stream;
	p->note = 0;
	for (size_t i = 0; i < len; i++)
		p->data[i] = ((const char *) data)[i];
	return gate_send_packet(&p->header);
}

/* The error of a call reply (-1 for an empty or short reply: unknown op). */
static inline int gate_peer_reply_error(const struct gate_packet *p)
{
	if (p->size < GATE_PACKET_HEADER_SIZE + 2)
		return -1;
	const uint8_t *c = (const uint8_t *) (p + 1);
	return (int16_t) (c[0] | (c[1] << 8));
}

/* Parses an INFO packet of the peer service.  Returns 0, or -1 if it is malformed. */
static inline int gate_peer_parse_event(const struct gate_packet *p, struct gate_peer_event *e)
{
	const uint8_t *c = (const uint8_t *) (p + 1);
	size_t n = p->size - GATE_PACKET_HEADER_SIZE;
	if (p->size < GATE_PACKET_HEADER_SIZE + 10)
		return -1;
	e->stream = (int32_t) (c[0] | (c[1] << 8) | (c[2] << 16) | ((uint32_t) c[3] << 24));
	e->type = c[4];
	e->status = c[5];
	size_t o = 8;
	e->group_len = c[o++];
	if (o + e->group_len + 1 > n)
		return -1;
	e->group = (const char *) c + o;
	o += e->group_len;
	e->peer_len = c[o++];
	if (o + e->peer_len > n)
		return -1;
	e->peer = (const char *) c + o;
	o += e->peer_len;
	if (e->type == GATE_PEER_EVENT_REQUEST || e->type == GATE_PEER_EVENT_CONNECTED) {
		if (o + 1 > n)
			return -1;
		e->data_len = c[o++];
		if (o + e->data_len > n)
			return -1;
	} else {
		e->data_len = n - o;
	}
	e->data = c + o;
	return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* GATE_PEER_H */
