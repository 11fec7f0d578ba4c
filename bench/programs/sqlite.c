// cflags: --target=wasm32-wasi -Os -Inode_modules/better-sqlite3/deps/sqlite3 -DSQLITE_OS_OTHER=1 -DSQLITE_THREADSAFE=0 -DSQLITE_TEMP_STORE=3 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_OMIT_SHARED_CACHE -DSQLITE_OMIT_WAL -DSQLITE_DQS=0 -DLONGDOUBLE_TYPE=double -Wno-unused-function -Wno-unused-variable -Wno-unused-but-set-variable -lc
//
// sqlite: a real-world Gate program of about 1 MB — SQLite 3 (the
// amalgamation that better-sqlite3 ships) with an in-memory database behind
// a VFS that opens no files. run() creates a table, inserts 2 000 rows in a
// transaction, indexes them and aggregates; it returns a checksum of the
// results (bench/launch-cold.ts times its first launch through gate-server;
// test/runtime/sqlite.test.ts runs it time-sliced, suspended and restored).

#include "sqlite3.c"

#include <gate.h>

// The VFS: no files (the database is ":memory:" and temporary storage is
// memory), randomness and time from Gate's WASI subset.
static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out)
{
	(void) vfs, (void) name, (void) file, (void) flags, (void) out;
	return SQLITE_CANTOPEN;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
	(void) vfs, (void) name, (void) sync;
	return SQLITE_IOERR_DELETE;
}

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void) vfs, (void) name, (void) flags;
	*out = 0;
	return SQLITE_OK;
}

static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void) vfs;
	sqlite3_snprintf(n, out, "%s", name);
	return SQLITE_OK;
}

static int vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void) vfs;
	if (__wasi_random_get((uint8_t *) out, (size_t) n) != 0)
		return 0;
	return n;
}

static int vfs_sleep(sqlite3_vfs *vfs, int us)
{
	(void) vfs;
	return us;
}

static int vfs_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void) vfs;
	__wasi_timestamp_t ns = 0;
	if (__wasi_clock_time_get(__WASI_CLOCKID_REALTIME, 1000000, &ns) != 0)
		return SQLITE_ERROR;
	// Julian day number in milliseconds.
	*out = (sqlite3_int64) (ns / 1000000) + (sqlite3_int64) 210866760000000LL;
	return SQLITE_OK;
}

static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
	sqlite3_int64 ms = 0;
	vfs_current_time_int64(vfs, &ms);
	*out = (double) ms / 86400000.0;
	return SQLITE_OK;
}

static int vfs_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void) vfs, (void) n, (void) out;
	return 0;
}

static sqlite3_vfs memory_vfs = {
	.iVersion = 2,
	.szOsFile = sizeof(sqlite3_file),
	.mxPathname = 256,
	.zName = "gate-memory",
	.xOpen = vfs_open,
	.xDelete = vfs_delete,
	.xAccess = vfs_access,
	.xFullPathname = vfs_full_pathname,
	.xRandomness = vfs_randomness,
	.xSleep = vfs_sleep,
	.xCurrentTime = vfs_current_time,
	.xGetLastError = vfs_last_error,
	.xCurrentTimeInt64 = vfs_current_time_int64,
};

int sqlite3_os_init(void)
{
	return sqlite3_vfs_register(&memory_vfs, 1);
}

int sqlite3_os_end(void)
{
	return SQLITE_OK;
}

static sqlite3_int64 checksum;

static int add_row(void *arg, int n, char **values, char **names)
{
	(void) arg, (void) names;
	for (int i = 0; i < n; i++)
		for (const char *p = values[i] ? values[i] : ""; *p; p++)
			checksum = (checksum * 31 + (unsigned char) *p) % 1000000007;
	return 0;
}

static void exec(sqlite3 *db, const char *sql)
{
	char *error = NULL;
	if (sqlite3_exec(db, sql, add_row, NULL, &error) != SQLITE_OK) {
		gate_debug("sqlite: ");
		gate_debug(error ? error : "error");
		gate_debug("\n");
		gate_exit(1);
	}
}

static sqlite3_int64 workload(void)
{
	sqlite3 *db = NULL;
	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		gate_exit(1);
	checksum = 0;
	exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL)");
	exec(db, "BEGIN");
	exec(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) "
		 "INSERT INTO t (name, grp, val) SELECT 'name-' || ((x * 7919) % 2000) || '-x', x % 97, ((x * 31) % 1000) / 7.0 FROM c");
	exec(db, "COMMIT");
	exec(db, "CREATE INDEX t_grp ON t (grp, val)");
	exec(db, "SELECT count(*) FROM t WHERE name LIKE '%12%'");
	exec(db, "SELECT grp, count(*), round(sum(val)) FROM t GROUP BY grp ORDER BY grp");
	sqlite3_close(db);
	return checksum;
}

static int32_t report(sqlite3_int64 sum)
{
	gate_debug("sqlite: checksum ");
	gate_debug_int(sum);
	gate_debug("\n");
	return (int32_t) sum;
}

// The workload once.
__attribute__((export_name("run"))) int32_t run(void)
{
	return report(workload());
}

// The workload 10 times over, each from an empty database (for tests that
// suspend and time-slice it midway); prints the combined checksum.
__attribute__((export_name("repeat"))) int32_t repeat(void)
{
	sqlite3_int64 sum = 0;
	for (int i = 0; i < 10; i++)
		sum = (sum * 7 + workload()) % 1000000007;
	return report(sum);
}
