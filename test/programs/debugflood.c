// debugflood: writes to the debug log (fd 1) without end, for the debug
// output limits (docs/security.md "Debug output").
//
// Imports: env.__wasi_fd_write.  Exports: memory, lines, bytes, big, small.
//   lines  1 KiB lines ("x…x\n") forever, as fast as it can
//   bytes  one byte per write forever ("y"), the most writes per byte
//   big    200 KiB ("z…z\n") in one write, and returns
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

static char blob[200 * 1024];

__attribute__((export_name("big")))
void big(void)
{
	for (unsigned i = 0; i < sizeof blob - 1; i++)
		blob[i] = 'z';
	blob[sizeof blob - 1] = '\n';
	gate_debug_data(blob, sizeof blob);
}

__attribute__((export_name("small")))
void small(void)
{
	gate_debug("small: ok\n");
}
