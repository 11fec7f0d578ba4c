// cflags: --target=wasm32-wasi
//
// abi: the ABI test program (tests.md §2.8, abi.md §2–§7).
//
// Every `TEST(name)` below becomes an export `test_<name>` which prints
// exactly "PASS\n" to fd 1 when all its checks hold; a failing check prints
// "abi.c:<line>: <expr>\n" and calls proc_exit(1).  Every `TEST_TRAP(name)`
// becomes `testtrap_<name>`, which makes a call that must suspend the program
// with ABI_DEFICIENCY and prints nothing; if the call returns, it prints a
// message and exits with 1.  A harness may find the names by scanning this
// file for lines starting with TEST( and TEST_TRAP( (as the original did).
//
// Expected harness configuration: time resolution 1 µs (clock_res → 1024),
// `origin` the only available service, no input pending at start.  The module
// has 66 exports (more than the server's default limit of 64).
//
// WASI functions are imported from module wasi_snapshot_preview1 (types and
// constants come from wasi-libc's <wasi/api.h>; the imports are declared here
// rather than taken from libc's wrappers so that no libc is linked and every
// signature is exactly the one in abi.md §3), plus env.__gate_fd_65536 and
// env.__gate_io_65536 from gate.h.

#include <wasi/api.h>

#include <gate.h>

// ---------------------------------------------------------------------------
// Imports

#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))

WASI(args_get) int32_t wasi_args_get(uint8_t **argv, uint8_t *argv_buf);
WASI(args_sizes_get) int32_t wasi_args_sizes_get(uint32_t *argc, uint32_t *argv_buf_size);
WASI(clock_res_get) int32_t wasi_clock_res_get(uint32_t id, uint64_t *resolution);
WASI(clock_time_get) int32_t wasi_clock_time_get(uint32_t id, uint64_t precision, uint64_t *time);
WASI(environ_get) int32_t wasi_environ_get(uint8_t **environ, uint8_t *environ_buf);
WASI(environ_sizes_get) int32_t wasi_environ_sizes_get(uint32_t *count, uint32_t *buf_size);
WASI(fd_advise) int32_t wasi_fd_advise(int32_t fd, uint64_t offset, uint64_t len, int32_t advice);
WASI(fd_allocate) int32_t wasi_fd_allocate(int32_t fd, uint64_t offset, uint64_t len);
WASI(fd_close) int32_t wasi_fd_close(int32_t fd);
WASI(fd_datasync) int32_t wasi_fd_datasync(int32_t fd);
WASI(fd_fdstat_get) int32_t wasi_fd_fdstat_get(int32_t fd, __wasi_fdstat_t *stat);
WASI(fd_fdstat_set_flags) int32_t wasi_fd_fdstat_set_flags(int32_t fd, int32_t flags);
WASI(fd_fdstat_set_rights) int32_t wasi_fd_fdstat_set_rights(int32_t fd, uint64_t base, uint64_t inheriting);
WASI(fd_filestat_get) int32_t wasi_fd_filestat_get(int32_t fd, void *filestat);
WASI(fd_filestat_set_size) int32_t wasi_fd_filestat_set_size(int32_t fd, uint64_t size);
WASI(fd_filestat_set_times) int32_t wasi_fd_filestat_set_times(int32_t fd, uint64_t atim, uint64_t mtim, int32_t flags);
WASI(fd_pread) int32_t wasi_fd_pread(int32_t fd, const __wasi_iovec_t *iovs, uint32_t iovs_len, uint64_t offset, uint32_t *nread);
WASI(fd_prestat_dir_name) int32_t wasi_fd_prestat_dir_name(int32_t fd, void *path, uint32_t path_len);
WASI(fd_prestat_get) int32_t wasi_fd_prestat_get(int32_t fd, void *prestat);
WASI(fd_pwrite) int32_t wasi_fd_pwrite(int32_t fd, const __wasi_ciovec_t *iovs, uint32_t iovs_len, uint64_t offset, uint32_t *nwritten);
WASI(fd_read) int32_t wasi_fd_read(int32_t fd, const __wasi_iovec_t *iovs, uint32_t iovs_len, uint32_t *nread);
WASI(fd_readdir) int32_t wasi_fd_readdir(int32_t fd, void *buf, uint32_t buf_len, uint64_t cookie, uint32_t *bufused);
WASI(fd_renumber) int32_t wasi_fd_renumber(int32_t from, int32_t to);
WASI(fd_seek) int32_t wasi_fd_seek(int32_t fd, int64_t offset, int32_t whence, uint64_t *newoffset);
WASI(fd_sync) int32_t wasi_fd_sync(int32_t fd);
WASI(fd_tell) int32_t wasi_fd_tell(int32_t fd, uint64_t *offset);
WASI(fd_write) int32_t wasi_fd_write(int32_t fd, const __wasi_ciovec_t *iovs, uint32_t iovs_len, uint32_t *nwritten);
WASI(path_create_directory) int32_t wasi_path_create_directory(int32_t fd, const char *path, uint32_t path_len);
WASI(path_filestat_get) int32_t wasi_path_filestat_get(int32_t fd, int32_t flags, const char *path, uint32_t path_len, void *filestat);
WASI(path_filestat_set_times) int32_t wasi_path_filestat_set_times(int32_t fd, int32_t flags, const char *path, uint32_t path_len, uint64_t atim, uint64_t mtim, int32_t fst_flags);
WASI(path_link) int32_t wasi_path_link(int32_t old_fd, int32_t old_flags, const char *old_path, uint32_t old_path_len, int32_t new_fd, const char *new_path, uint32_t new_path_len);
WASI(path_open) int32_t wasi_path_open(int32_t fd, int32_t dirflags, const char *path, uint32_t path_len, int32_t oflags, uint64_t rights_base, uint64_t rights_inheriting, int32_t fdflags, int32_t *opened_fd);
WASI(path_readlink) int32_t wasi_path_readlink(int32_t fd, const char *path, uint32_t path_len, void *buf, uint32_t buf_len, uint32_t *bufused);
WASI(path_remove_directory) int32_t wasi_path_remove_directory(int32_t fd, const char *path, uint32_t path_len);
WASI(path_rename) int32_t wasi_path_rename(int32_t fd, const char *old_path, uint32_t old_path_len, int32_t new_fd, const char *new_path, uint32_t new_path_len);
WASI(path_symlink) int32_t wasi_path_symlink(const char *old_path, uint32_t old_path_len, int32_t fd, const char *new_path, uint32_t new_path_len);
WASI(path_unlink_file) int32_t wasi_path_unlink_file(int32_t fd, const char *path, uint32_t path_len);
WASI(poll_oneoff) int32_t wasi_poll_oneoff(const __wasi_subscription_t *in, __wasi_event_t *out, uint32_t nsubscriptions, uint32_t *nevents);
WASI(proc_exit) __attribute__((noreturn)) void wasi_proc_exit(uint32_t status);
WASI(proc_raise) int32_t wasi_proc_raise(int32_t sig);
WASI(random_get) int32_t wasi_random_get(void *buf, uint32_t len);
WASI(sched_yield) int32_t wasi_sched_yield(void);
WASI(sock_recv) int32_t wasi_sock_recv(int32_t fd, const __wasi_iovec_t *ri_data, uint32_t ri_data_len, int32_t ri_flags, uint32_t *ro_datalen, uint16_t *ro_flags);
WASI(sock_send) int32_t wasi_sock_send(int32_t fd, const __wasi_ciovec_t *si_data, uint32_t si_data_len, int32_t si_flags, uint32_t *so_datalen);
WASI(sock_shutdown) int32_t wasi_sock_shutdown(int32_t fd, int32_t how);

// ---------------------------------------------------------------------------
// Test framework

#define READ __WASI_RIGHTS_FD_READ
#define WRITE __WASI_RIGHTS_FD_WRITE
#define RW (__WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE)

static void print_data(const void *data, size_t len)
{
	__wasi_ciovec_t iov = {(const uint8_t *) data, len};
	uint32_t n;
	(void) wasi_fd_write(1, &iov, 1, &n);
}

static void print(const char *s)
{
	size_t n = 0;
	while (s[n] != '\0')
		n++;
	print_data(s, n);
}

static void print_uint(uint32_t value)
{
	char buf[12];
	char *p = buf + sizeof buf;
	do {
		*--p = (char) ('0' + value % 10);
		value /= 10;
	} while (value != 0);
	print_data(p, (size_t) (buf + sizeof buf - p));
}

__attribute__((noreturn)) static void assert_fail(const char *file, int line, const char *expr)
{
	print(file);
	print(":");
	print_uint((uint32_t) line);
	print(": ");
	print(expr);
	print("\n");
	wasi_proc_exit(1);
}

#define ASSERT(expr) \
	do { \
		if (!(expr)) \
			assert_fail(__FILE_NAME__, __LINE__, #expr); \
	} while (0)

#define TEST(name) \
	static void test_body_##name(void); \
	__attribute__((export_name("test_" #name))) void test_##name(void) \
	{ \
		test_body_##name(); \
		print("PASS\n"); \
	} \
	static void test_body_##name(void)

#define TEST_TRAP(name) \
	static void testtrap_body_##name(void); \
	__attribute__((export_name("testtrap_" #name))) void testtrap_##name(void) \
	{ \
		testtrap_body_##name(); \
		print("testtrap_" #name ": the call returned instead of trapping\n"); \
		wasi_proc_exit(1); \
	} \
	static void testtrap_body_##name(void)

// Scratch space for the pointer arguments of calls whose outputs are not
// inspected.  Pointers are valid so that only the fd decides the outcome.
static uint8_t scratch[256] __attribute__((aligned(8)));
static const char path[] = "x";
static __wasi_iovec_t scratch_iov = {scratch, sizeof scratch};

// Packet receive buffer: the host may send up to 65536 bytes per packet.
static uint8_t recv_buf[GATE_MAX_RECV_SIZE] __attribute__((aligned(8)));

// A discovery request for one unknown service: 8 + 2 + 1 + 5 = 16 bytes, no
// padding needed.  The response is 8 + 2 + 1 = 11 bytes (16 on the wire).
static const uint8_t bogus_discovery[16] __attribute__((aligned(8))) = {
	16, 0, 0, 0,    // size
	0xff, 0xff,     // code -1
	GATE_PACKET_DOMAIN_CALL,
	0,              // index
	1, 0,           // count
	5, 'b', 'o', 'g', 'u', 's',
};

static void check_bogus_response(const uint8_t *buf)
{
	const struct gate_service_state_packet *r = (const struct gate_service_state_packet *) buf;
	ASSERT(r->header.size == 11);
	ASSERT(r->header.code == GATE_PACKET_CODE_SERVICES);
	ASSERT((r->header.domain & GATE_PACKET_DOMAIN_MASK) == GATE_PACKET_DOMAIN_CALL);
	ASSERT(r->count == 1);
	ASSERT((r->states[0] & GATE_SERVICE_STATE_AVAIL) == 0);
}

// Writes the bogus discovery packet to fd 4 with fd_write (3 iovecs),
// retrying while the non-blocking fd reports EAGAIN.
static void write_bogus_discovery(void)
{
	const __wasi_ciovec_t iov[3] = {
		{bogus_discovery, 8},
		{bogus_discovery + 8, 3},
		{bogus_discovery + 11, 5},
	};
	uint32_t n = 0;
	int32_t err;
	while ((err = wasi_fd_write(GATE_FD, iov, 3, &n)) == __WASI_ERRNO_AGAIN)
		(void) wasi_sched_yield();
	ASSERT(err == 0);
	ASSERT(n == 16);
}

// ---------------------------------------------------------------------------
// Arguments, environment, clocks

TEST(args)
{
	uint32_t argc = 12345, size = 12345;
	ASSERT(wasi_args_sizes_get(&argc, &size) == 0);
	ASSERT(argc == 0);
	ASSERT(size == 0);

	uint8_t *argv[2] = {(uint8_t *) 0x1111, (uint8_t *) 0x2222};
	uint8_t buf[4] = {0xa5, 0xa5, 0xa5, 0xa5};
	ASSERT(wasi_args_get(argv, buf) == 0);
	ASSERT(argv[0] == (uint8_t *) 0x1111 && argv[1] == (uint8_t *) 0x2222);
	ASSERT(buf[0] == 0xa5 && buf[1] == 0xa5 && buf[2] == 0xa5 && buf[3] == 0xa5);
}

TEST(clock_res)
{
	for (uint32_t id = 0; id < 4; id++) {
		uint64_t res = 0;
		ASSERT(wasi_clock_res_get(id, &res) == 0);
		ASSERT(res == 1024); // 1 µs time resolution → 2^bitlen(1000) ns
	}
	uint64_t res;
	ASSERT(wasi_clock_res_get(4, &res) != 0);
}

TEST(clock_time)
{
	uint64_t t = 0;
	ASSERT(wasi_clock_time_get(__WASI_CLOCKID_REALTIME, 1, &t) == 0);
	ASSERT(t > 0);
	t = 0;
	ASSERT(wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t) == 0);
	ASSERT(t > 0);
	ASSERT(wasi_clock_time_get(4, 1, &t) != 0);
}

TEST_TRAP(clock_time_process)
{
	uint64_t t;
	(void) wasi_clock_time_get(__WASI_CLOCKID_PROCESS_CPUTIME_ID, 1, &t);
}

TEST_TRAP(clock_time_thread)
{
	uint64_t t;
	(void) wasi_clock_time_get(__WASI_CLOCKID_THREAD_CPUTIME_ID, 1, &t);
}

TEST(environ)
{
	uint32_t count = 0, size = 0;
	ASSERT(wasi_environ_sizes_get(&count, &size) == 0);
	ASSERT(count == 3);
	ASSERT(size > 0 && size < 1000);

	static uint8_t *ptrs[3];
	static uint8_t buf[1000] __attribute__((aligned(8)));
	ASSERT(wasi_environ_get(ptrs, buf) == 0);
	for (uint32_t i = 0; i < count; i++) {
		ASSERT(ptrs[i] >= buf && ptrs[i] < buf + size);
		const uint8_t *p = ptrs[i];
		while (p < buf + size && *p != '\0')
			p++;
		ASSERT(p < buf + size); // terminated inside the buffer
	}
}

// ---------------------------------------------------------------------------
// The Gate fd import

TEST(fd)
{
	ASSERT(__gate_fd_65536() == 4);
}

// ---------------------------------------------------------------------------
// Stubs: every fd 0..9 gives an error (EPERM for 0, 1, 2, 4, else EBADF)

#define FOR_FDS(fd) for (int32_t fd = 0; fd < 10; fd++)

TEST(fd_advise)
{
	FOR_FDS(fd) ASSERT(wasi_fd_advise(fd, 0, 1, __WASI_ADVICE_NORMAL) != 0);
}

TEST(fd_allocate)
{
	FOR_FDS(fd) ASSERT(wasi_fd_allocate(fd, 0, 1) != 0);
}

TEST(datasync)
{
	FOR_FDS(fd) ASSERT(wasi_fd_datasync(fd) != 0);
}

TEST(fd_fdstat_set_flags)
{
	FOR_FDS(fd) ASSERT(wasi_fd_fdstat_set_flags(fd, 0) != 0);
}

TEST(fd_filestat_get)
{
	FOR_FDS(fd) ASSERT(wasi_fd_filestat_get(fd, scratch) != 0);
}

TEST(fd_filestat_set_size)
{
	FOR_FDS(fd) ASSERT(wasi_fd_filestat_set_size(fd, 0) != 0);
}

TEST(fd_filestat_set_times)
{
	FOR_FDS(fd) ASSERT(wasi_fd_filestat_set_times(fd, 0, 0, 0) != 0);
}

TEST(fd_pread)
{
	uint32_t n;
	FOR_FDS(fd) ASSERT(wasi_fd_pread(fd, &scratch_iov, 1, 0, &n) != 0);
}

TEST(fd_prestat_dir_name)
{
	FOR_FDS(fd) ASSERT(wasi_fd_prestat_dir_name(fd, scratch, sizeof scratch) != 0);
}

TEST(fd_prestat_get)
{
	FOR_FDS(fd) ASSERT(wasi_fd_prestat_get(fd, scratch) != 0);
}

TEST(fd_pwrite)
{
	const __wasi_ciovec_t iov = {scratch, 1};
	uint32_t n;
	FOR_FDS(fd) ASSERT(wasi_fd_pwrite(fd, &iov, 1, 0, &n) != 0);
}

TEST(fd_readdir)
{
	uint32_t used;
	FOR_FDS(fd) ASSERT(wasi_fd_readdir(fd, scratch, sizeof scratch, 0, &used) != 0);
}

TEST(fd_seek)
{
	uint64_t offset;
	FOR_FDS(fd) ASSERT(wasi_fd_seek(fd, 0, __WASI_WHENCE_CUR, &offset) != 0);
}

TEST(sync)
{
	FOR_FDS(fd) ASSERT(wasi_fd_sync(fd) != 0);
}

TEST(fd_tell)
{
	uint64_t offset;
	FOR_FDS(fd) ASSERT(wasi_fd_tell(fd, &offset) != 0);
}

TEST(path_create_directory)
{
	FOR_FDS(fd) ASSERT(wasi_path_create_directory(fd, path, 1) != 0);
}

TEST(path_filestat_get)
{
	FOR_FDS(fd) ASSERT(wasi_path_filestat_get(fd, 0, path, 1, scratch) != 0);
}

TEST(path_filestat_set_times)
{
	FOR_FDS(fd) ASSERT(wasi_path_filestat_set_times(fd, 0, path, 1, 0, 0, 0) != 0);
}

TEST(path_open)
{
	int32_t opened;
	FOR_FDS(fd) ASSERT(wasi_path_open(fd, 0, path, 1, 0, RW, 0, 0, &opened) != 0);
}

TEST(path_readlink)
{
	uint32_t used;
	FOR_FDS(fd) ASSERT(wasi_path_readlink(fd, path, 1, scratch, sizeof scratch, &used) != 0);
}

TEST(path_remove_directory)
{
	FOR_FDS(fd) ASSERT(wasi_path_remove_directory(fd, path, 1) != 0);
}

TEST(path_symlink)
{
	FOR_FDS(fd) ASSERT(wasi_path_symlink(path, 1, fd, path, 1) != 0);
}

TEST(path_unlink_file)
{
	FOR_FDS(fd) ASSERT(wasi_path_unlink_file(fd, path, 1) != 0);
}

TEST(sock_recv)
{
	uint32_t n;
	uint16_t flags;
	FOR_FDS(fd) ASSERT(wasi_sock_recv(fd, &scratch_iov, 1, 0, &n, &flags) != 0);
}

TEST(sock_send)
{
	const __wasi_ciovec_t iov = {scratch, 1};
	uint32_t n;
	FOR_FDS(fd) ASSERT(wasi_sock_send(fd, &iov, 1, 0, &n) != 0);
}

TEST(sock_shutdown)
{
	FOR_FDS(fd) ASSERT(wasi_sock_shutdown(fd, __WASI_SDFLAGS_RD | __WASI_SDFLAGS_WR) != 0);
}

TEST(path_link)
{
	FOR_FDS(fd1) FOR_FDS(fd2) ASSERT(wasi_path_link(fd1, 0, path, 1, fd2, path, 1) != 0);
}

TEST(path_rename)
{
	FOR_FDS(fd1) FOR_FDS(fd2) ASSERT(wasi_path_rename(fd1, path, 1, fd2, path, 1) != 0);
}

// ---------------------------------------------------------------------------
// fd_close

TEST(fd_close)
{
	ASSERT(wasi_fd_close(3) != 0);
	ASSERT(wasi_fd_close(5) != 0);
}

TEST_TRAP(fd_close_stdin)
{
	(void) wasi_fd_close(0);
}

TEST_TRAP(fd_close_stdout)
{
	(void) wasi_fd_close(1);
}

TEST_TRAP(fd_close_stderr)
{
	(void) wasi_fd_close(2);
}

TEST_TRAP(fd_close_gate)
{
	(void) wasi_fd_close(4);
}

// ---------------------------------------------------------------------------
// fd_fdstat_get / fd_fdstat_set_rights

TEST(fd_fdstat_get)
{
	static const struct {
		int32_t fd;
		uint16_t flags;
		uint64_t rights;
	} expect[] = {
		{0, 0, 0},
		{1, 0, WRITE},
		{2, 0, WRITE},
		{4, __WASI_FDFLAGS_NONBLOCK, RW},
	};

	for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
		__wasi_fdstat_t stat;
		stat.fs_flags = 0xffff;
		stat.fs_rights_base = ~0ULL;
		stat.fs_rights_inheriting = ~0ULL;
		ASSERT(wasi_fd_fdstat_get(expect[i].fd, &stat) == 0);
		ASSERT(stat.fs_flags == expect[i].flags);
		ASSERT(stat.fs_rights_base == expect[i].rights);
		ASSERT(stat.fs_rights_inheriting == 0);
	}

	__wasi_fdstat_t stat;
	ASSERT(wasi_fd_fdstat_get(3, &stat) != 0);
	ASSERT(wasi_fd_fdstat_get(5, &stat) != 0);
}

TEST(fd_fdstat_set_rights)
{
	// stdin: only "no rights" can be kept.
	ASSERT(wasi_fd_fdstat_set_rights(0, 0, 0) == 0);
	ASSERT(wasi_fd_fdstat_set_rights(0, 0, READ) != 0);
	ASSERT(wasi_fd_fdstat_set_rights(0, READ, 0) != 0);
	ASSERT(wasi_fd_fdstat_set_rights(0, __WASI_RIGHTS_FD_ALLOCATE, 0) != 0);

	// stdout/stderr: WRITE can be kept; other rights cannot be added.
	for (int32_t fd = 1; fd <= 2; fd++) {
		ASSERT(wasi_fd_fdstat_set_rights(fd, 0, WRITE) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, WRITE, 0) == 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, READ, 0) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, RW, 0) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_DATASYNC, 0) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_SEEK, 0) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_DATASYNC | __WASI_RIGHTS_FD_SEEK, 0) != 0);
	}

	// Nonexistent fds.
	for (int32_t fd = 3; fd <= 5; fd += 2) {
		ASSERT(wasi_fd_fdstat_set_rights(fd, 0, 0) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, 0, READ) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, READ, 0) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, WRITE, 0) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, RW, 0) != 0);
		ASSERT(wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_DATASYNC | __WASI_RIGHTS_FD_SEEK, 0) != 0);
	}

	// The gate fd: READ|WRITE can be kept; other rights cannot be added.
	ASSERT(wasi_fd_fdstat_set_rights(4, 0, RW) != 0);
	ASSERT(wasi_fd_fdstat_set_rights(4, RW, 0) == 0);
	ASSERT(wasi_fd_fdstat_set_rights(4, RW | __WASI_RIGHTS_FD_TELL, 0) != 0);
	ASSERT(wasi_fd_fdstat_set_rights(4, __WASI_RIGHTS_FD_TELL, 0) != 0);
}

// Dropping rights that the fd has is an ABI deficiency.

TEST_TRAP(fd_fdstat_set_rights_stdout_drop)
{
	(void) wasi_fd_fdstat_set_rights(1, 0, 0);
}

TEST_TRAP(fd_fdstat_set_rights_stderr_drop)
{
	(void) wasi_fd_fdstat_set_rights(2, 0, 0);
}

TEST_TRAP(fd_fdstat_set_rights_gate_drop_r)
{
	(void) wasi_fd_fdstat_set_rights(4, WRITE, 0);
}

TEST_TRAP(fd_fdstat_set_rights_gate_drop_w)
{
	(void) wasi_fd_fdstat_set_rights(4, READ, 0);
}

TEST_TRAP(fd_fdstat_set_rights_gate_drop_rw)
{
	(void) wasi_fd_fdstat_set_rights(4, 0, 0);
}

// ---------------------------------------------------------------------------
// fd_read, fd_renumber, fd_write

TEST(fd_read)
{
	static const int32_t fds[] = {0, 1, 2, 3, 5};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
		uint32_t n;
		ASSERT(wasi_fd_read(fds[i], &scratch_iov, 1, &n) != 0);
	}
}

TEST(fd_renumber)
{
	ASSERT(wasi_fd_renumber(0, 0) == 0);
	ASSERT(wasi_fd_renumber(1, 1) == 0);
	ASSERT(wasi_fd_renumber(2, 2) == 0);
	ASSERT(wasi_fd_renumber(4, 4) == 0);
	ASSERT(wasi_fd_renumber(3, 3) != 0);
	ASSERT(wasi_fd_renumber(5, 5) != 0);
	FOR_FDS(fd) {
		ASSERT(wasi_fd_renumber(fd, 10) != 0);
		ASSERT(wasi_fd_renumber(10, fd) != 0);
	}
}

TEST_TRAP(fd_renumber_stdin)
{
	(void) wasi_fd_renumber(0, 1);
}

TEST_TRAP(fd_renumber_stdout)
{
	(void) wasi_fd_renumber(1, 4);
}

TEST_TRAP(fd_renumber_stderr)
{
	(void) wasi_fd_renumber(2, 0);
}

TEST_TRAP(fd_renumber_gate)
{
	(void) wasi_fd_renumber(4, 1);
}

TEST(fd_write)
{
	static const int32_t fds[] = {0, 3, 5};
	const __wasi_ciovec_t iov = {(const uint8_t *) "x", 1};
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
		uint32_t n;
		ASSERT(wasi_fd_write(fds[i], &iov, 1, &n) != 0);
	}
}

// The tested write itself produces the "PASS\n"; exiting keeps the wrapper
// from printing a second one.
TEST(fd_write_stdout)
{
	const __wasi_ciovec_t iov[3] = {
		{(const uint8_t *) "PAS", 3},
		{(const uint8_t *) "", 0},
		{(const uint8_t *) "S\n", 2},
	};
	uint32_t n = 0;
	ASSERT(wasi_fd_write(1, iov, 3, &n) == 0);
	ASSERT(n == 5);
	wasi_proc_exit(0);
}

TEST(fd_write_stderr)
{
	const __wasi_ciovec_t iov = {(const uint8_t *) "PASS\n", 5};
	uint32_t n = 0;
	ASSERT(wasi_fd_write(2, &iov, 1, &n) == 0);
	ASSERT(n == 5);
	wasi_proc_exit(0);
}

// fd_write + fd_read on the gate fd: a discovery request for "bogus" and its
// 11-byte response (16 bytes with padding).
TEST(fd_write_and_read_gate)
{
	write_bogus_discovery();

	uint32_t total = 0;
	while (total < 16) {
		const __wasi_iovec_t iov = {recv_buf + total, sizeof recv_buf - total};
		uint32_t n = 0;
		int32_t err = wasi_fd_read(GATE_FD, &iov, 1, &n);
		if (err == __WASI_ERRNO_AGAIN) {
			(void) wasi_sched_yield();
			continue;
		}
		ASSERT(err == 0);
		ASSERT(n > 0);
		total += n;
	}
	ASSERT(total == 16);
	check_bogus_response(recv_buf);
}

// ---------------------------------------------------------------------------
// io

// The same exchange through io: blocking calls until 16 bytes have been sent
// and 16 received.  The first io call of the process reports flag bit 0
// ("started or resumed"); later calls report 0.
TEST(io)
{
	size_t sent = 0, received = 0;
	bool first = true;

	while (sent < 16 || received < 16) {
		struct gate_iovec recv = {recv_buf + received, sizeof recv_buf - received};
		struct gate_iovec send = {(void *) (bogus_discovery + sent), 16 - sent};
		size_t nrecv = 0, nsent = 0;
		uint64_t flags = 0xdeadbeef;

		__gate_io_65536(&recv, received < 16 ? 1 : 0, &nrecv, &send, sent < 16 ? 1 : 0, &nsent, GATE_IO_WAIT, &flags);

		if (first)
			ASSERT(flags == GATE_IO_FLAG_STARTED);
		else
			ASSERT(flags == 0);
		first = false;

		sent += nsent;
		received += nrecv;
	}
	ASSERT(sent == 16);
	ASSERT(received == 16);
	check_bogus_response(recv_buf);
}

// ---------------------------------------------------------------------------
// poll_oneoff

static __wasi_subscription_t clock_sub(uint64_t userdata, uint32_t id, uint64_t timeout, bool absolute)
{
	__wasi_subscription_t s = {0};
	s.userdata = userdata;
	s.u.tag = __WASI_EVENTTYPE_CLOCK;
	s.u.u.clock.id = id;
	s.u.u.clock.timeout = timeout;
	s.u.u.clock.precision = 1;
	s.u.u.clock.flags = absolute ? __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME : 0;
	return s;
}

static __wasi_subscription_t fd_sub(uint64_t userdata, uint8_t tag, int32_t fd)
{
	__wasi_subscription_t s = {0};
	s.userdata = userdata;
	s.u.tag = tag;
	if (tag == __WASI_EVENTTYPE_FD_READ)
		s.u.u.fd_read.file_descriptor = fd;
	else
		s.u.u.fd_write.file_descriptor = fd;
	return s;
}

static __wasi_event_t events[8];

TEST(poll_oneoff)
{
	uint32_t n;

	// (1) Clocks: realtime absolute 1 (long past), realtime relative 2^30,
	// monotonic relative 0, monotonic absolute 2^63 (far future).  Nothing
	// waits (the past/zero timeouts make the wait 0), and exactly the events
	// of userdata 0 and 2 count.
	{
		const __wasi_subscription_t subs[4] = {
			clock_sub(0, __WASI_CLOCKID_REALTIME, 1, true),
			clock_sub(1, __WASI_CLOCKID_REALTIME, 1ULL << 30, false),
			clock_sub(2, __WASI_CLOCKID_MONOTONIC, 0, false),
			clock_sub(3, __WASI_CLOCKID_MONOTONIC, 1ULL << 63, true),
		};
		n = 12345;
		ASSERT(wasi_poll_oneoff(subs, events, 4, &n) == 0);
		ASSERT(n == 2);
		ASSERT(events[0].userdata == 0);
		ASSERT(events[0].error == 0);
		ASSERT(events[0].type == __WASI_EVENTTYPE_CLOCK);
		ASSERT(events[1].userdata == 2);
		ASSERT(events[1].error == 0);
		ASSERT(events[1].type == __WASI_EVENTTYPE_CLOCK);
	}

	// (2) An invalid clock id is an event with an error.
	{
		const __wasi_subscription_t sub = clock_sub(7, 4, 0, false);
		n = 12345;
		ASSERT(wasi_poll_oneoff(&sub, events, 1, &n) == 0);
		ASSERT(n == 1);
		ASSERT(events[0].userdata == 7);
		ASSERT(events[0].error != 0);
	}

	// (3) Writability: stdout, stderr and the gate fd are writable; stdin
	// and nonexistent fds give errors.  Userdata = fd.
	{
		static const int32_t fds[6] = {0, 1, 4, 2, 3, 5};
		__wasi_subscription_t subs[6];
		for (int i = 0; i < 6; i++)
			subs[i] = fd_sub((uint64_t) fds[i], __WASI_EVENTTYPE_FD_WRITE, fds[i]);
		n = 12345;
		ASSERT(wasi_poll_oneoff(subs, events, 6, &n) == 0);
		ASSERT(n == 6);
		for (uint32_t i = 0; i < n; i++) {
			const __wasi_event_t *e = &events[i];
			switch (e->userdata) {
			case 0:
			case 3:
			case 5:
				ASSERT(e->error != 0);
				break;
			case 1:
			case 2:
			case 4:
				ASSERT(e->error == 0);
				ASSERT(e->type == __WASI_EVENTTYPE_FD_WRITE);
				ASSERT(e->fd_readwrite.nbytes > 0);
				ASSERT(e->fd_readwrite.flags == 0);
				break;
			default:
				ASSERT(!"unexpected userdata");
			}
		}
	}

	// (4) Readability with nothing pending: 0, 1 and 2 give errors and the
	// gate fd is not ready, so it gives no event (and nothing waits).
	{
		static const int32_t fds[4] = {0, 1, 2, 4};
		__wasi_subscription_t subs[4];
		for (int i = 0; i < 4; i++)
			subs[i] = fd_sub((uint64_t) fds[i], __WASI_EVENTTYPE_FD_READ, fds[i]);
		n = 12345;
		ASSERT(wasi_poll_oneoff(subs, events, 4, &n) == 0);
		ASSERT(n == 3);
		for (uint32_t i = 0; i < n; i++) {
			ASSERT(events[i].userdata != 4);
			ASSERT(events[i].error != 0);
		}
	}

	// (5) After sending a discovery request, waiting for readability of the
	// gate fd blocks until the response arrives.
	{
		write_bogus_discovery();
		const __wasi_subscription_t sub = fd_sub(4, __WASI_EVENTTYPE_FD_READ, 4);
		n = 12345;
		ASSERT(wasi_poll_oneoff(&sub, events, 1, &n) == 0);
		ASSERT(n == 1);
		ASSERT(events[0].userdata == 4);
		ASSERT(events[0].error == 0);
		ASSERT(events[0].type == __WASI_EVENTTYPE_FD_READ);
		ASSERT(events[0].fd_readwrite.nbytes > 0);
	}

	// (6) An unknown subscription tag is an event with an error.
	{
		__wasi_subscription_t sub = {0};
		sub.userdata = 100;
		sub.u.tag = 100;
		n = 12345;
		ASSERT(wasi_poll_oneoff(&sub, events, 1, &n) == 0);
		ASSERT(n == 1);
		ASSERT(events[0].userdata == 100);
		ASSERT(events[0].error != 0);
	}
}

TEST_TRAP(poll_oneoff_process_cputime)
{
	const __wasi_subscription_t sub = clock_sub(0, __WASI_CLOCKID_PROCESS_CPUTIME_ID, 1, false);
	uint32_t n;
	(void) wasi_poll_oneoff(&sub, events, 1, &n);
}

TEST_TRAP(poll_oneoff_thread_cputime)
{
	const __wasi_subscription_t sub = clock_sub(0, __WASI_CLOCKID_THREAD_CPUTIME_ID, 1, false);
	uint32_t n;
	(void) wasi_poll_oneoff(&sub, events, 1, &n);
}

// ---------------------------------------------------------------------------
// proc_raise, random_get, sched_yield

TEST_TRAP(proc_raise)
{
	(void) wasi_proc_raise(1);
}

TEST(random_get)
{
	uint8_t buf[16] = {0};
	ASSERT(wasi_random_get(buf, sizeof buf) == 0);
	bool nonzero = false;
	for (size_t i = 0; i < sizeof buf; i++)
		nonzero |= buf[i] != 0;
	ASSERT(nonzero);
}

TEST_TRAP(random_get_too_much)
{
	uint8_t buf[17];
	(void) wasi_random_get(buf, sizeof buf); // the pool holds 16 bytes
}

TEST(sched_yield)
{
	ASSERT(wasi_sched_yield() == 0);
}
