// sieve: memory-bound kernel — sieve of Eratosthenes over 8M numbers, run 3
// times.  Exports run() → checksum (3 × the number of primes below 2^23,
// 3 × 564163 = 1692489).  Imports nothing.

#include <stdint.h>

#define N (8 * 1024 * 1024)
#define ROUNDS 3

static uint8_t composite[N]; // zero-initialized .bss, not in the module

static uint32_t sieve(void)
{
	for (uint32_t i = 0; i < N; i++)
		composite[i] = 0;
	uint32_t count = 0;
	for (uint32_t i = 2; i < N; i++) {
		if (composite[i])
			continue;
		count++;
		for (uint64_t j = (uint64_t) i * i; j < N; j += i)
			composite[j] = 1;
	}
	return count;
}

__attribute__((export_name("run")))
int32_t run(void)
{
	uint32_t sum = 0;
	for (int r = 0; r < ROUNDS; r++)
		sum += sieve();
	return (int32_t) sum;
}
