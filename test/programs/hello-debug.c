// hello-debug: writes to the debug log only (tests.md §2.3).
//
// Imports: env.__wasi_fd_write.  Exports: memory, debug.
// `debug` writes "hello, " and "world\n" to fd 2 in two separate writes, so
// the log must concatenate them into exactly "hello, world\n".

#include <gate.h>

__attribute__((export_name("debug")))
int debug(void)
{
	gate_debug("hello, ");
	gate_debug("world\n");
	return 0;
}
