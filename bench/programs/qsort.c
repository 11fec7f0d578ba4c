// qsort: indirect-call-heavy kernel — sorts 1M pseudo-random ints with a
// quicksort (our own; no libc) that compares through a function pointer,
// i.e. a call_indirect per comparison.  Exports run() → checksum of the
// sorted array (order-sensitive), or -1 if it is not sorted.  Imports nothing.

#include <stddef.h>
#include <stdint.h>

#define N (1024 * 1024)

typedef int (*compare_fn)(const void *, const void *);

static int32_t values[N];

static int compare_int(const void *a, const void *b)
{
	int32_t x = *(const int32_t *) a, y = *(const int32_t *) b;
	return (x > y) - (x < y);
}

// Reached only through this pointer, so calls stay indirect.
static volatile compare_fn comparator = compare_int;

static void swap(int32_t *a, int32_t *b)
{
	int32_t t = *a;
	*a = *b;
	*b = t;
}

static void insertion_sort(int32_t *a, size_t n, compare_fn cmp)
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && cmp(&a[j - 1], &a[j]) > 0; j--)
			swap(&a[j - 1], &a[j]);
}

// Quicksort with median-of-three pivots; recurses into the smaller part and
// loops on the larger, so the depth stays O(log n).
static void quicksort(int32_t *a, size_t n, compare_fn cmp)
{
	while (n > 16) {
		size_t mid = n / 2;
		if (cmp(&a[mid], &a[0]) < 0)
			swap(&a[mid], &a[0]);
		if (cmp(&a[n - 1], &a[0]) < 0)
			swap(&a[n - 1], &a[0]);
		if (cmp(&a[n - 1], &a[mid]) < 0)
			swap(&a[n - 1], &a[mid]);
		int32_t pivot = a[mid];

		size_t i = 0, j = n - 1;
		for (;;) {
			while (cmp(&a[i], &pivot) < 0)
				i++;
			while (cmp(&pivot, &a[j]) < 0)
				j--;
			if (i >= j)
				break;
			swap(&a[i], &a[j]);
			i++;
			j--;
		}
		size_t left = j + 1; // a[0..j] <= pivot <= a[j+1..n-1]
		if (left < n - left) {
			quicksort(a, left, cmp);
			a += left;
			n -= left;
		} else {
			quicksort(a + left, n - left, cmp);
			n = left;
		}
	}
	insertion_sort(a, n, cmp);
}

__attribute__((export_name("run")))
int32_t run(void)
{
	uint32_t x = 123456789u;
	for (size_t i = 0; i < N; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		values[i] = (int32_t) x;
	}

	quicksort(values, N, comparator);

	uint32_t sum = 0;
	for (size_t i = 0; i < N; i++) {
		if (i > 0 && values[i - 1] > values[i])
			return -1;
		sum = sum * 31 + (uint32_t) values[i];
	}
	return (int32_t) sum;
}
