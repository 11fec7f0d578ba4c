// cflags: -g -gdwarf-5 -O1 -Wl,--export=counter -Wl,--export=message
// debuggee.c with DWARF 5 line tables (clang-14 writes version 4 by default), for the DWARF reader's tests.
#include "debuggee.c"
