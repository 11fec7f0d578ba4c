/*
 * gate.h — C API for Gate programs.
 *
 * Header-only and freestanding: it needs no libc, only the compiler's own
 * <stddef.h>, <stdint.h> and <stdbool.h>.  Build for wasm32, e.g.:
 *
 *     clang --target=wasm32 -O2 -nostdlib -mbulk-memory -Wl,--no-entry -I sdk/c prog.c
 *
 * A Gate program talks to the outside world only through a byte stream of
 * packets exchanged with the `io` import (see the ABI specification,
 * abi.md §4 and §8–§11).  Every packet starts with an 8-byte header and
 * occupies a multiple of 8 bytes in the stream: 0–7 zero padding bytes follow
 * the packet's `size` bytes.  Packets address services by a code which is the
 * service's position in the program's discovery order (code -1 = discovery).
 *
 * Imports.  Every import below is declared with an explicit import module and
 * name, so the program links without --allow-undefined, and an import only
 * appears in the module if the program actually uses it.  They are all taken
 * from module "env" with the `__gate_` / `__wasi_` prefixes that Gate maps to
 * its `gate` and `wasi_snapshot_preview1` modules (abi.md §1.2).  The C
 * identifiers of the WASI imports are prefixed `__gate_wasi_` so that this
 * header can be combined with <wasi/api.h>.
 */

#ifndef GATE_H
#define GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Constants                                                                */
/* ------------------------------------------------------------------------ */

#define GATE_ABI_VERSION 0

/* Version of this C API (the original's gate.h has the same value). */
#define GATE_API_VERSION 0

/* The packet file descriptor (also returned by gate_fd()). */
#define GATE_FD 4

/* The host never sends packets larger than this; every receive buffer passed
 * to the packet helpers must be at least this large. */
#define GATE_MAX_RECV_SIZE 65536

/* Largest packet the program may send (environment GATE_MAX_SEND_SIZE). */
#define GATE_MAX_SEND_SIZE 65536

/* Every packet occupies a multiple of this many bytes in the stream. */
#define GATE_PACKET_ALIGNMENT 8

/* Number of bytes a packet of `size` occupies in the stream (a constant
 * expression; gate_align_packet() is the function). */
#define GATE_ALIGN_PACKET(size) \
	(((size) + (size_t) (GATE_PACKET_ALIGNMENT - 1)) & ~(size_t) (GATE_PACKET_ALIGNMENT - 1))

#define GATE_PACKET_HEADER_SIZE 8  /* struct gate_packet */
#define GATE_DATA_HEADER_SIZE 16   /* struct gate_data_packet without data */

/* Packet code of service discovery requests and responses.  Other negative
 * codes are reserved: received packets with them must be ignored, and the
 * program must never send them. */
#define GATE_PACKET_CODE_SERVICES (-1)

/* Packet domains (low 4 bits of the domain byte; the high bits must be 0 when
 * sending and are ignored when receiving — mask with GATE_PACKET_DOMAIN_MASK). */
#define GATE_PACKET_DOMAIN_CALL 0 /* request/response, one reply per call */
#define GATE_PACKET_DOMAIN_INFO 1 /* asynchronous notifications, no reply */
#define GATE_PACKET_DOMAIN_FLOW 2 /* stream flow control */
#define GATE_PACKET_DOMAIN_DATA 3 /* stream data */
#define GATE_PACKET_DOMAIN_MASK 0x0f

/* Service state bit in discovery responses and INFO state notifications. */
#define GATE_SERVICE_STATE_AVAIL 0x1

#define GATE_SERVICE_NAME_MAX 127 /* bytes; names must be 1..127 bytes */
#define GATE_MAX_SERVICES 256     /* per program instance */

/* gate_io() timeout meaning "wait indefinitely".  A timeout in 0..999 ns with
 * buffers to transfer never waits; with no buffers it is a cheap yield point. */
#define GATE_IO_WAIT ((int64_t) -1)

/* Bit of the gate_io() flags word: set on the first io call after the program
 * was started or resumed (reading it clears it). */
#define GATE_IO_FLAG_STARTED 0x1

/* WASI clock ids usable with gate_clock_time(). */
#define GATE_CLOCK_REALTIME 0
#define GATE_CLOCK_MONOTONIC 1

/* WASI errno values returned by the WASI imports. */
#define GATE_ESUCCESS 0
#define GATE_EAGAIN 6
#define GATE_EBADF 8
#define GATE_EFAULT 21
#define GATE_EINVAL 28
#define GATE_EPERM 63

/* ------------------------------------------------------------------------ */
/* Packet layouts (little-endian, as laid out in linear memory)             */
/* ------------------------------------------------------------------------ */

/* Header of every packet (abi.md §8.1). */
struct gate_packet {
	uint32_t size;  /* including this header, excluding padding: 8..65536 */
	int16_t code;   /* service code, or GATE_PACKET_CODE_SERVICES */
	uint8_t domain; /* GATE_PACKET_DOMAIN_* */
	uint8_t index;  /* call reply index (received CALLs); 0 when sending */
};

/* Service discovery request (code -1, CALL domain, abi.md §9.1).  `names`
 * holds `count` entries of { u8 length (1..127); length bytes }.  Note: the
 * packet size is offsetof(names) + name bytes = 10 + ..., not sizeof. */
struct gate_service_name_packet {
	struct gate_packet header;
	uint16_t count;
	char names[];
};

/* Discovery response (code -1, CALL domain) and service state notification
 * (code -1, INFO domain): one state byte per service discovered so far, in
 * code order (abi.md §9.2–9.3).  Size 10 + count. */
struct gate_service_state_packet {
	struct gate_packet header;
	uint16_t count;
	uint8_t states[];
};

/* One FLOW entry (abi.md §11.1): value > 0 grants that many more bytes of
 * credit on stream `id`; 0 means the sender will not accept any more data. */
struct gate_flow {
	int32_t id;
	int32_t value;
};

/* FLOW packet: (size - 8) / 8 entries. */
struct gate_flow_packet {
	struct gate_packet header;
	struct gate_flow flows[];
};

/* DATA packet (abi.md §11.2): size - 16 data bytes; no data = end of stream. */
struct gate_data_packet {
	struct gate_packet header;
	int32_t id;
	int32_t note;
	char data[];
};

/* The flags word of gate_io() (GATE_IO_FLAG_*). */
typedef uint64_t gate_flags_t;

/* I/O vector for gate_io() (same layout as a WASI iovec/ciovec). */
struct gate_iovec {
	void *iov_base;
	size_t iov_len;
};

#ifdef __cplusplus
#define GATE_STATIC_ASSERT_(expr, msg) static_assert(expr, msg)
#else
#define GATE_STATIC_ASSERT_(expr, msg) _Static_assert(expr, msg)
#endif

GATE_STATIC_ASSERT_(sizeof(struct gate_packet) == GATE_PACKET_HEADER_SIZE, "gate_packet layout");
GATE_STATIC_ASSERT_(offsetof(struct gate_service_name_packet, names) == 10, "gate_service_name_packet layout");
GATE_STATIC_ASSERT_(offsetof(struct gate_service_state_packet, states) == 10, "gate_service_state_packet layout");
GATE_STATIC_ASSERT_(sizeof(struct gate_flow) == 8, "gate_flow layout");
GATE_STATIC_ASSERT_(offsetof(struct gate_flow_packet, flows) == 8, "gate_flow_packet layout");
GATE_STATIC_ASSERT_(offsetof(struct gate_data_packet, data) == GATE_DATA_HEADER_SIZE, "gate_data_packet layout");
GATE_STATIC_ASSERT_(sizeof(struct gate_iovec) == 8, "gate_iovec layout (wasm32 only)");

/* ------------------------------------------------------------------------ */
/* Imports                                                                  */
/* ------------------------------------------------------------------------ */

#define GATE_IMPORT_(name) __attribute__((import_module("env"), import_name(name)))
#define GATE_NORETURN_ __attribute__((noreturn))

/* The packet transfer function (abi.md §4).  Receives into `recv` and sends
 * from `send`, waiting at most `timeout` nanoseconds (-1 = indefinitely) for
 * either direction to become ready.  Transfers a raw byte stream: any call may
 * move a fraction of a packet or several packets, or nothing at all.
 * Stores byte counts (u32) and the flags word (u64) if the pointers are
 * non-null.  "_65536" declares the receive buffer size the program supports. */
GATE_IMPORT_("__gate_io_65536")
void __gate_io_65536(const struct gate_iovec *recv, int recvlen, size_t *nreceived,
                     const struct gate_iovec *send, int sendlen, size_t *nsent,
                     int64_t timeout, gate_flags_t *flags);

/* Returns the packet file descriptor number (4). */
GATE_IMPORT_("__gate_fd_65536")
int __gate_fd_65536(void);

/* WASI fd_write: fd 1 and 2 append to the debug log (always succeeds). */
GATE_IMPORT_("__wasi_fd_write")
uint16_t __gate_wasi_fd_write(int fd, const struct gate_iovec *iov, size_t iovlen, size_t *nwritten);

/* WASI proc_exit: status 0 → result 0, anything else → result 1. */
GATE_IMPORT_("__wasi_proc_exit") GATE_NORETURN_
void __gate_wasi_proc_exit(uint32_t status);

/* WASI random_get: at most 16 bytes per process (re)start; asking for more
 * suspends the program with ABI_DEFICIENCY (use the `random` service). */
GATE_IMPORT_("__wasi_random_get")
uint16_t __gate_wasi_random_get(void *buf, size_t len);

/* WASI clock_time_get: clocks 0 (realtime) and 1 (monotonic) in ns. */
GATE_IMPORT_("__wasi_clock_time_get")
uint16_t __gate_wasi_clock_time_get(uint32_t clock_id, uint64_t precision, uint64_t *time);

/* ------------------------------------------------------------------------ */
/* Basic wrappers                                                           */
/* ------------------------------------------------------------------------ */

static inline void gate_io(const struct gate_iovec *recv, int recvlen, size_t *nreceived,
                           const struct gate_iovec *send, int sendlen, size_t *nsent,
                           int64_t timeout, gate_flags_t *flags)
{
	__gate_io_65536(recv, recvlen, nreceived, send, sendlen, nsent, timeout, flags);
}

static inline int gate_fd(void)
{
	return __gate_fd_65536();
}

/* Receives up to `size` bytes of the packet stream into `buf`, waiting at
 * most `timeout` ns (-1: until something arrives).  Returns the number of
 * bytes received: any part of a packet, or several (see gate_recv_packet for
 * whole packets). */
static inline size_t gate_recv(void *buf, size_t size, int64_t timeout)
{
	const struct gate_iovec iov = {buf, size};
	size_t n = 0;
	gate_io(&iov, 1, &n, NULL, 0, NULL, timeout, NULL);
	return n;
}

/* Sends up to `size` bytes of the packet stream from `data`, waiting at most
 * `timeout` ns (-1: until something can be sent).  Returns the number of bytes
 * sent; the caller sends the rest (padding included) later (see
 * gate_send_packet for whole packets). */
static inline size_t gate_send(const void *data, size_t size, int64_t timeout)
{
	const struct gate_iovec iov = {(void *) data, size};
	size_t n = 0;
	gate_io(NULL, 0, NULL, &iov, 1, &n, timeout, NULL);
	return n;
}

/* Terminates the program: status 0 → TERMINATED with result 0, otherwise
 * result 1. */
GATE_NORETURN_ static inline void gate_exit(int status)
{
	__gate_wasi_proc_exit((uint32_t) status);
}

/* Fills buf with random bytes; returns a WASI errno. */
static inline int gate_random_get(void *buf, size_t len)
{
	return __gate_wasi_random_get(buf, len);
}

/* Reads a clock (GATE_CLOCK_*) into *time in nanoseconds; returns a WASI
 * errno (GATE_EINVAL for unknown clocks). */
static inline int gate_clock_time(uint32_t clock_id, uint64_t precision, uint64_t *time)
{
	return __gate_wasi_clock_time_get(clock_id, precision, time);
}

/* Wall-clock time in nanoseconds since the epoch (at the instance's time
 * resolution). */
static inline uint64_t gate_clock_realtime(void)
{
	uint64_t t = 0;
	(void) __gate_wasi_clock_time_get(GATE_CLOCK_REALTIME, 1, &t);
	return t;
}

/* Monotonic time in nanoseconds; continues across suspend and resume. */
static inline uint64_t gate_clock_monotonic(void)
{
	uint64_t t = 0;
	(void) __gate_wasi_clock_time_get(GATE_CLOCK_MONOTONIC, 1, &t);
	return t;
}

/* ------------------------------------------------------------------------ */
/* Debug log (fd 2; discarded unless the instance was started with logging)  */
/* With GATE_NO_DEBUG defined, these compile to nothing.  (The original    */
/* uses NDEBUG, which libraries such as SQLite's amalgamation define.)      */
/* ------------------------------------------------------------------------ */

static inline void gate_debug_data(const void *data, size_t size)
{
#ifdef GATE_NO_DEBUG
	(void) data;
	(void) size;
#else
	struct gate_iovec iov = {(void *) data, size};
	size_t n;
	(void) __gate_wasi_fd_write(2, &iov, 1, &n);
#endif
}

static inline size_t gate_strlen_(const char *s)
{
	size_t n = 0;
	while (s[n] != '\0')
		n++;
	return n;
}

/* A NUL-terminated string. */
static inline void gate_debug_str(const char *s)
{
	gate_debug_data(s, gate_strlen_(s));
}

/* Formats value backwards ending at `end`; returns the first character. */
static inline char *gate_format_uint_(char *end, uint64_t value, unsigned base)
{
	char *p = end;
	do {
		*--p = "0123456789abcdef"[value % base];
		value /= base;
	} while (value != 0);
	return p;
}

/* Decimal, e.g. "-123". */
static inline void gate_debug_int(int64_t value)
{
	char buf[24];
	char *end = buf + sizeof buf;
	uint64_t magnitude = value < 0 ? 0 - (uint64_t) value : (uint64_t) value;
	char *p = gate_format_uint_(end, magnitude, 10);
	if (value < 0)
		*--p = '-';
	gate_debug_data(p, (size_t) (end - p));
}

static inline void gate_debug_uint(uint64_t value)
{
	char buf[24];
	char *end = buf + sizeof buf;
	char *p = gate_format_uint_(end, value, 10);
	gate_debug_data(p, (size_t) (end - p));
}

/* Lower-case hexadecimal without prefix or leading zeros, e.g. "1f". */
static inline void gate_debug_hex(uint64_t value)
{
	char buf[24];
	char *end = buf + sizeof buf;
	char *p = gate_format_uint_(end, value, 16);
	gate_debug_data(p, (size_t) (end - p));
}

/* A pointer as "0x" and lower-case hexadecimal, e.g. "0x10a40". */
static inline void gate_debug_ptr(const void *ptr)
{
	gate_debug_data("0x", 2);
	gate_debug_hex((uintptr_t) ptr);
}

#ifdef __cplusplus
}
#endif

/* gate_debug(a, b, ...): writes each argument by its type: strings as text,
 * integers in decimal, pointers with gate_debug_ptr.  C: 1 to 16 arguments;
 * another type (e.g. a plain char or a double) is a compile-time error. */
#ifdef __cplusplus
static inline void gate_debug_one_(const char *s) { gate_debug_str(s); }
static inline void gate_debug_one_(char *s) { gate_debug_str(s); }
static inline void gate_debug_one_(const void *p) { gate_debug_ptr(p); }
static inline void gate_debug_one_(void *p) { gate_debug_ptr(p); }
static inline void gate_debug_one_(bool b) { gate_debug_uint(b); }
static inline void gate_debug_one_(signed char n) { gate_debug_int(n); }
static inline void gate_debug_one_(short n) { gate_debug_int(n); }
static inline void gate_debug_one_(int n) { gate_debug_int(n); }
static inline void gate_debug_one_(long n) { gate_debug_int(n); }
static inline void gate_debug_one_(long long n) { gate_debug_int(n); }
static inline void gate_debug_one_(unsigned char n) { gate_debug_uint(n); }
static inline void gate_debug_one_(unsigned short n) { gate_debug_uint(n); }
static inline void gate_debug_one_(unsigned n) { gate_debug_uint(n); }
static inline void gate_debug_one_(unsigned long n) { gate_debug_uint(n); }
static inline void gate_debug_one_(unsigned long long n) { gate_debug_uint(n); }
static inline void gate_debug() {}
template <typename First, typename... Others>
static inline void gate_debug(First first, Others... others)
{
	gate_debug_one_(first);
	gate_debug(others...);
}
#else
#define gate_debug_generic_(x) _Generic((x), \
	_Bool: gate_debug_uint, \
	signed char: gate_debug_int, \
	short: gate_debug_int, \
	int: gate_debug_int, \
	long: gate_debug_int, \
	long long: gate_debug_int, \
	unsigned char: gate_debug_uint, \
	unsigned short: gate_debug_uint, \
	unsigned: gate_debug_uint, \
	unsigned long: gate_debug_uint, \
	unsigned long long: gate_debug_uint, \
	const char *: gate_debug_str, \
	char *: gate_debug_str, \
	const void *: gate_debug_ptr, \
	void *: gate_debug_ptr)(x)
#define GATE_DEBUG_1_(a) gate_debug_generic_(a)
#define GATE_DEBUG_2_(a, ...) gate_debug_generic_(a), GATE_DEBUG_1_(__VA_ARGS__)
#define GATE_DEBUG_3_(a, ...) gate_debug_generic_(a), GATE_DEBUG_2_(__VA_ARGS__)
#define GATE_DEBUG_4_(a, ...) gate_debug_generic_(a), GATE_DEBUG_3_(__VA_ARGS__)
#define GATE_DEBUG_5_(a, ...) gate_debug_generic_(a), GATE_DEBUG_4_(__VA_ARGS__)
#define GATE_DEBUG_6_(a, ...) gate_debug_generic_(a), GATE_DEBUG_5_(__VA_ARGS__)
#define GATE_DEBUG_7_(a, ...) gate_debug_generic_(a), GATE_DEBUG_6_(__VA_ARGS__)
#define GATE_DEBUG_8_(a, ...) gate_debug_generic_(a), GATE_DEBUG_7_(__VA_ARGS__)
#define GATE_DEBUG_9_(a, ...) gate_debug_generic_(a), GATE_DEBUG_8_(__VA_ARGS__)
#define GATE_DEBUG_10_(a, ...) gate_debug_generic_(a), GATE_DEBUG_9_(__VA_ARGS__)
#define GATE_DEBUG_11_(a, ...) gate_debug_generic_(a), GATE_DEBUG_10_(__VA_ARGS__)
#define GATE_DEBUG_12_(a, ...) gate_debug_generic_(a), GATE_DEBUG_11_(__VA_ARGS__)
#define GATE_DEBUG_13_(a, ...) gate_debug_generic_(a), GATE_DEBUG_12_(__VA_ARGS__)
#define GATE_DEBUG_14_(a, ...) gate_debug_generic_(a), GATE_DEBUG_13_(__VA_ARGS__)
#define GATE_DEBUG_15_(a, ...) gate_debug_generic_(a), GATE_DEBUG_14_(__VA_ARGS__)
#define GATE_DEBUG_16_(a, ...) gate_debug_generic_(a), GATE_DEBUG_15_(__VA_ARGS__)
#define GATE_DEBUG_COUNT_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, n, ...) n
#define GATE_DEBUG_CAT_(a, b) a##b
#define GATE_DEBUG_N_(n) GATE_DEBUG_CAT_(GATE_DEBUG_, n)
#define gate_debug(...) \
	((void) (GATE_DEBUG_N_(GATE_DEBUG_COUNT_(__VA_ARGS__, 16_, 15_, 14_, 13_, 12_, 11_, 10_, 9_, 8_, 7_, 6_, 5_, 4_, 3_, 2_, 1_, 0))(__VA_ARGS__)))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Packet helpers                                                           */
/* ------------------------------------------------------------------------ */

/* Number of bytes a packet of `size` occupies in the stream. */
static inline size_t gate_align_packet(size_t size)
{
	return GATE_ALIGN_PACKET(size);
}

/* Sends one whole packet: header->size bytes from `packet` followed by the
 * zero padding (taken from a static buffer, so the caller's buffer need not
 * include it).  Blocks until everything has been transferred.  Returns 0, or
 * -1 without sending anything if header->size is not within 8..65536.
 *
 * It does not receive: a program that may have input pending while the
 * host's output is congested should receive concurrently with gate_io()
 * instead, or it spins until the host catches up. */
static inline int gate_send_packet(const struct gate_packet *packet)
{
	static const uint8_t zeros[GATE_PACKET_ALIGNMENT] = {0};
	size_t size = packet->size;
	if (size < GATE_PACKET_HEADER_SIZE || size > GATE_MAX_SEND_SIZE)
		return -1;
	size_t total = gate_align_packet(size);
	size_t sent = 0;

	while (sent < total) {
		struct gate_iovec iov[2];
		int n = 0;
		if (sent < size) {
			iov[n].iov_base = (char *) packet + sent;
			iov[n].iov_len = size - sent;
			n++;
		}
		if (total > size) {
			size_t padsent = sent > size ? sent - size : 0;
			iov[n].iov_base = (void *) (zeros + padsent);
			iov[n].iov_len = total - size - padsent;
			n++;
		}
		size_t nsent = 0;
		gate_io(NULL, 0, NULL, iov, n, &nsent, GATE_IO_WAIT, NULL);
		sent += nsent;
	}
	return 0;
}

/* Receives (part of) one packet into `buf`, which must hold at least
 * GATE_MAX_RECV_SIZE bytes.  *offset is the number of bytes of the current
 * packet already received: start with 0 and pass the same variable again to
 * continue.  The 8-byte header is read first and then exactly the rest of the
 * padded packet, so bytes of the following packet are never consumed.
 *
 * Each io call waits at most `timeout` ns (GATE_IO_WAIT = block until the
 * packet is complete).  Returns 1 when a whole packet (including padding) is
 * in `buf` (and resets *offset to 0), 0 when an io call returned nothing
 * before that, or -1 if the received header has an invalid size. */
static inline int gate_recv_packet_partial(void *buf, size_t *offset, int64_t timeout)
{
	for (;;) {
		size_t want = GATE_PACKET_HEADER_SIZE;
		if (*offset >= GATE_PACKET_HEADER_SIZE) {
			uint32_t size = ((const struct gate_packet *) buf)->size;
			if (size < GATE_PACKET_HEADER_SIZE || size > GATE_MAX_RECV_SIZE)
				return -1;
			want = gate_align_packet(size);
			if (*offset >= want) {
				*offset = 0;
				return 1;
			}
		}

		struct gate_iovec iov = {(char *) buf + *offset, want - *offset};
		size_t n = 0;
		gate_io(&iov, 1, &n, NULL, 0, NULL, timeout, NULL);
		if (n == 0 && timeout != GATE_IO_WAIT)
			return 0;
		*offset += n;
	}
}

/* Receives one whole packet into `buf` (at least GATE_MAX_RECV_SIZE bytes,
 * preferably 8-byte aligned), blocking until it is complete.  Returns the
 * packet, or NULL if its header has an invalid size. */
static inline struct gate_packet *gate_recv_packet(void *buf)
{
	size_t offset = 0;
	int r;
	while ((r = gate_recv_packet_partial(buf, &offset, GATE_IO_WAIT)) == 0) {
	}
	return r > 0 ? (struct gate_packet *) buf : NULL;
}

/* Low 4 bits of the domain byte. */
static inline unsigned gate_packet_domain(const struct gate_packet *packet)
{
	return packet->domain & GATE_PACKET_DOMAIN_MASK;
}

#ifdef __cplusplus
}
#endif

#endif /* GATE_H */
