// fib: call-heavy kernel — naive recursive fib(34) = 5702887.
// Exports run() → checksum (the result).  Imports nothing.

#include <stdint.h>

// volatile input so the call is not evaluated at compile time.
static volatile uint32_t input = 34;

__attribute__((noinline)) static uint32_t fib(uint32_t n)
{
	return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

__attribute__((export_name("run")))
int32_t run(void)
{
	return (int32_t) fib(input); // 5702887
}
