// debugflood: writes to the debug log (fd 1) without end, for the debug
// output limits (docs/security.md "Debug output").
//
// Imports: env.__wasi_fd_write.  Exports: memory, lines, bytes, small.
//   lines  1 KiB lines ("x…x\n") forever, as fast as it can
//   bytes  one byte per write forever ("y"), the most writes per byte
//   small  "small: ok\n" once and returns (well under any limit)

#include <gate.h>

static char line[1024];

__attribute__((export_name("lines")))
void lines(void)
{
	for (unsigned i = 0; i < sizeof line - 1; i++)
		line[i] = 'x';
	line[sizeof line - 1] = '\n';
	for (;;)
		gate_debug_data(line, sizeof line);
}

__attribute__((export_name("bytes")))
void bytes(void)
{
	for (;;)
		gate_debug_data("y", 1);
}

__attribute__((export_name("small")))
void small(void)
{
	gate_debug("small: ok\n");
}
