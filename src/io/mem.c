/*
 * mem.c - the ds program's allocator settings (see mem.h).
 */
#include "io/mem.h"

#include <stdlib.h>   /* defines __GLIBC__ on glibc */

#if defined(__GLIBC__)
#include <malloc.h>
#endif

/* Large enough that a transaction's buffers come from the heap (the
 * largest mmap threshold glibc accepts is 32 MiB on 64-bit), and that
 * heaps never shrink on their own while work runs. */
#define MMAP_THRESHOLD (32 << 20)
#define TRIM_THRESHOLD (256 << 20)

void ds_mem_tune(void)
{
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
#endif
}

void ds_mem_release(void)
{
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}
