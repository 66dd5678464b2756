/*
 * mem.h - the ds program's allocator settings.
 *
 * glibc gives freed memory back to the kernel eagerly: a per-thread heap
 * shrinks as soon as its free top passes 128 KiB, and blocks of 128 KiB
 * or more are mmap'd and munmap'd one by one.  A sync or an ingest frees
 * and allocates megabytes per transaction (LMDB's dirty pages, decoded
 * pages, posting buffers), so with the defaults every transaction grew
 * the heaps again, page fault by page fault, each unmapping costing TLB
 * shootdowns on the other cores.  ds_mem_tune keeps freed memory in the
 * process while work runs; ds_mem_release hands it back once the daemon
 * has gone idle.  Both are no-ops on other C libraries.
 */
#ifndef DS_IO_MEM_H
#define DS_IO_MEM_H

/* Called once at the start of main, before any thread exists. */
void ds_mem_tune(void);

/* Returns free heap memory to the kernel (malloc_trim). */
void ds_mem_release(void);

#endif
