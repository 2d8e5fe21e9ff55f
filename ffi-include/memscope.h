/*
 * memscope.h: per-thread allocation context scopes for programs running
 * under libmemscope.so (LD_PRELOAD, or linked).
 *
 * A scope changes how every malloc-family call and every free made on the
 * calling thread behaves until it is popped, including calls made deep
 * inside libraries, in the manner of the Linux kernel's
 * memalloc_noreclaim_save()/restore():
 *
 *   MEMSCOPE_NORECLAIM  nothing allocated or freed here may enter reclaim:
 *                       no mmap/munmap/madvise/mprotect/mremap/brk, no page
 *                       fault on fresh memory, no purging, no waiting on a
 *                       lock that purging holds. Served from a pre-faulted
 *                       pool; when it is empty, NULL + ENOMEM at once.
 *   MEMSCOPE_NOWARN     failures print no diagnostic (they are still counted).
 *   MEMSCOPE_NOFAIL     a possible request never returns NULL: on failure,
 *                       reclaimers run, then the reserve pool serves, then
 *                       the thread waits and retries (see README). An
 *                       impossible request follows MEMSCOPE_NOFAIL_POLICY.
 *   MEMSCOPE_NOFS       reclaimers that take filesystem locks do not run.
 *   MEMSCOPE_NOIO       reclaimers that do I/O (or take FS locks) do not run.
 *
 * Programs compiled with this header but run WITHOUT libmemscope.so still
 * work: every function here is a static inline wrapper over a weak symbol
 * of the library (memscope_lib_*), checked for NULL, so each call becomes a
 * no-op (with the documented default result) when the library is absent.
 * The same binary run with LD_PRELOAD=libmemscope.so gets real scopes.
 *
 * Thread safety: scopes are per thread; every function acts on the calling
 * thread only and may be called from any thread.
 */
#ifndef MEMSCOPE_H
#define MEMSCOPE_H

#include <errno.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEMSCOPE_VERSION_MAJOR 0
#define MEMSCOPE_VERSION_MINOR 2
#define MEMSCOPE_VERSION_PATCH 0
/* MAJOR << 16 | MINOR << 8 | PATCH, as memscope_version() returns. */
#define MEMSCOPE_VERSION \
    ((MEMSCOPE_VERSION_MAJOR << 16) | (MEMSCOPE_VERSION_MINOR << 8) | MEMSCOPE_VERSION_PATCH)

#define MEMSCOPE_NORECLAIM 0x01u
#define MEMSCOPE_NOWARN    0x02u
#define MEMSCOPE_NOFAIL    0x04u
#define MEMSCOPE_NOFS      0x08u
#define MEMSCOPE_NOIO      0x10u

/* The library's entry points: weak, so that a program built with this
 * header links and runs without the library. Call the inline functions
 * below, never these. */
unsigned memscope_lib_push(unsigned flags) __attribute__((weak));
void memscope_lib_pop(unsigned saved) __attribute__((weak));
unsigned memscope_lib_current(void) __attribute__((weak));
unsigned memscope_lib_version(void) __attribute__((weak));
int memscope_lib_reclaimer_register(const char *name, size_t (*reclaim)(size_t want, void *arg), void *arg,
                                    unsigned needs) __attribute__((weak));
void memscope_lib_reclaimer_unregister(int id) __attribute__((weak));
void memscope_lib_test_fail_next(unsigned long n) __attribute__((weak));
void memscope_lib_stats_flush(void) __attribute__((weak));
int memscope_lib_note_header(unsigned header_version) __attribute__((weak));
int memscope_lib_check_routed(void (*probe)(void)) __attribute__((weak));
int memscope_lib_prepare(size_t size, size_t count) __attribute__((weak));
void memscope_lib_lock_acquired(const void *lock, const void *site) __attribute__((weak));
int memscope_lib_lock_released(const void *lock) __attribute__((weak));

/* 1 if libmemscope.so is loaded in this process. */
/* Pushes are inlined into their caller even unoptimised, so that where a
 * scope was pushed (memscope-stat sites) is the caller's code, not this
 * header's. */
#if defined(__GNUC__) || defined(__clang__)
#define MEMSCOPE__PUSH_INLINE static inline __attribute__((always_inline))
#else
#define MEMSCOPE__PUSH_INLINE static inline
#endif

static inline int memscope_loaded(void) { return memscope_lib_push != 0; }

/* Enter a scope on the calling thread: ORs `flags` into the thread's
 * allocation context. Returns the flags in force before; pass that value to
 * memscope_pop() to leave. Unknown bits are ignored. The first push of
 * MEMSCOPE_NORECLAIM or MEMSCOPE_NOFAIL in the process creates the pool and
 * the NOFAIL reserve (commits pre-faulted memory, starts the maintenance
 * thread); the first NORECLAIM push on a thread sets up that thread's pool
 * cache. After that, push never allocates, never blocks, makes no
 * syscall, and is async-signal-safe. Without the library: returns 0. */
MEMSCOPE__PUSH_INLINE unsigned memscope_push(unsigned flags)
{
    /* Once per file that includes this header: the library compares its
     * version with this header's and, if their MAJOR.MINOR differ, says so
     * in one line (once per process); everything keeps working, and what
     * one side lacks is a no-op. A library too old to tell: silent. */
    static int memscope__header_noted;
    if (!memscope_lib_push)
        return 0u;
    if (!memscope__header_noted && memscope_lib_note_header)
        memscope__header_noted = memscope_lib_note_header(MEMSCOPE_VERSION);
    return memscope_lib_push(flags);
}

/* Leave a scope: restores `saved`, which must be what the matching
 * memscope_push() returned (scopes nest, innermost first). A pop that does
 * not match a push is counted and reported (unless NOWARN or NORECLAIM is
 * in force) and never turns a flag on. Never allocates or blocks; leaving
 * NORECLAIM hands the frees it deferred to the maintenance thread.
 * Async-signal-safe. Without the library: does nothing. */
static inline void memscope_pop(unsigned saved)
{
    if (memscope_lib_pop)
        memscope_lib_pop(saved);
}

/* The calling thread's flags. Never allocates or blocks. Without the
 * library: 0. */
static inline unsigned memscope_current(void)
{
    return memscope_lib_current ? memscope_lib_current() : 0u;
}

/* The library's version as MEMSCOPE_VERSION encodes it; compare with the
 * header's macro to detect a mismatch. Without the library: 0. */
static inline unsigned memscope_version(void)
{
    return memscope_lib_version ? memscope_lib_version() : 0u;
}

/* Whether the program's allocations reach memscope: runs `probe`, which
 * should allocate and free once through the program's allocator (C++:
 * `delete new char[64]` where operator new is replaced), and returns 1 if
 * memscope served it; 0 if another allocator did (then, once per process,
 * one line on stderr and the `scopes_bypassed` event: scopes cannot act on
 * those allocations); -1 if it cannot tell (inside NORECLAIM, or without
 * the library). */
static inline int memscope_check_routed(void (*probe)(void))
{
    return memscope_lib_check_routed ? memscope_lib_check_routed(probe) : -1;
}

/* ---- Reclaimers (userspace shrinkers) ------------------------------------ */

#define MEMSCOPE_RECLAIM_FS 0x1u /* may take filesystem-level locks: skipped under NOFS and NOIO */
#define MEMSCOPE_RECLAIM_IO 0x2u /* may do I/O: skipped under NOIO */

/* Registers a callback that frees memory the daemon can do without (a
 * cache). `reclaim(want, arg)` should free about `want` bytes and return
 * how many it freed. It runs:
 *   - on a thread whose NOFAIL allocation failed, before the retry, unless
 *     that thread is in NORECLAIM, or in NOFS (for MEMSCOPE_RECLAIM_FS
 *     callbacks) or NOIO (for MEMSCOPE_RECLAIM_FS or _IO ones);
 *   - on the maintenance thread when RSS exceeds MEMSCOPE_SOFT_LIMIT.
 * Callbacks run in registration order, on any thread, possibly on several
 * at once; inside one, allocations may use the NOFAIL reserve and never
 * re-enter reclaim. `name` (copied, up to 31 bytes) may be NULL.
 * Returns an id >= 1, or -1 if `reclaim` is NULL, 64 are registered, or
 * the library is not loaded. Thread-safe. Allocates nothing. */
static inline int memscope_reclaimer_register(const char *name, size_t (*reclaim)(size_t want, void *arg),
                                              void *arg, unsigned needs)
{
    return memscope_lib_reclaimer_register ? memscope_lib_reclaimer_register(name, reclaim, arg, needs) : -1;
}

/* Unregisters `id`; returns once no thread runs its callback any more
 * (called from inside that callback, it does not wait for itself).
 * Unknown ids (-1 included) are ignored. Thread-safe. */
static inline void memscope_reclaimer_unregister(int id)
{
    if (memscope_lib_reclaimer_unregister)
        memscope_lib_reclaimer_unregister(id);
}

/* Makes sure `count` blocks of `size` bytes can be served inside
 * MEMSCOPE_NORECLAIM on this thread without waiting for memscope's
 * maintenance thread: stocks them now (committing pool memory if needed),
 * keeps at least that many ready from then on, and sets this thread up
 * for NORECLAIM. What a daemon calls at start-up, outside its locks, for
 * the shapes it allocates under them (a scoped thread also carves what it
 * needs from committed pool memory by itself, but a stocked block is the
 * cheapest it can get). Makes syscalls and takes locks: call it outside
 * NORECLAIM. Returns 0, or -1 with errno EINVAL (size 0, larger than the
 * pool serves (4 MiB), or called inside NORECLAIM), ENOMEM (the pool
 * cannot hold them) or ENOSYS (libmemscope.so is not loaded). */
static inline int memscope_prepare(size_t size, size_t count)
{
    if (!memscope_lib_prepare) {
        errno = ENOSYS;
        return -1;
    }
    return memscope_lib_prepare(size, count);
}

/* Testing only: the next `n` ordinary allocation attempts made under
 * MEMSCOPE_NOFAIL (on any thread) fail as if memory were exhausted, so
 * that the retry path (reclaimers, reserve, back-off, policy) can be
 * exercised on demand. 0 turns it off. */
static inline void memscope_test_fail_next(unsigned long n)
{
    if (memscope_lib_test_fail_next)
        memscope_lib_test_fail_next(n);
}

/* ---- Lock sections (docs/LOCKS.md) --------------------------------------- */

/* libmemscope_locks.so tells memscope when a thread takes and releases
 * pthread locks; while the thread holds at least one it is in the scope
 * MEMSCOPE_LOCK_SCOPE names (report: none; noreclaim; noreclaim,nofail)
 * and its allocations are counted apart (memscope-stat locks). For a lock
 * that does not go through pthread (a futex, your own spinlock), say the
 * same yourself: memscope_lock_acquired() right after taking it, with the
 * lock's address and the lock call's return address or any code address
 * that names the place (`__builtin_return_address(0)` in your lock
 * function), and memscope_lock_released() with the lock's address right
 * before releasing it (it returns 1 if the acquisition was counted, 0 if
 * not: a release counts only for a lock whose acquisition did). Nested
 * locks count once; sections compose with pushes and pops in any order.
 * Never allocates; no syscall once the thread is set up. Without the
 * library: nothing. */
static inline void memscope_lock_acquired(const void *lock, const void *site)
{
    if (memscope_lib_lock_acquired)
        memscope_lib_lock_acquired(lock, site);
}

static inline int memscope_lock_released(const void *lock)
{
    return memscope_lib_lock_released ? memscope_lib_lock_released(lock) : 0;
}

/* ---- Stats -------------------------------------------------------------- */

/* Publishes the calling thread's counts to the stats segment now (they
 * reach it by themselves within about 100 ms: docs/STATS.md). Cheap, no
 * syscall, safe inside any scope and in signal handlers. */
static inline void memscope_stats_flush(void)
{
    if (memscope_lib_stats_flush)
        memscope_lib_stats_flush();
}

/* ---- Conveniences (no-ops when libmemscope.so is not loaded) ---------- */

MEMSCOPE__PUSH_INLINE unsigned memscope_save(unsigned flags) { return memscope_push(flags); }

static inline void memscope_restore(unsigned saved) { memscope_pop(saved); }

/* Kernel-style pairs: unsigned s = memscope_noreclaim_save(); ...
 * memscope_noreclaim_restore(s); */
MEMSCOPE__PUSH_INLINE unsigned memscope_noreclaim_save(void) { return memscope_save(MEMSCOPE_NORECLAIM); }
static inline void memscope_noreclaim_restore(unsigned s) { memscope_restore(s); }
MEMSCOPE__PUSH_INLINE unsigned memscope_nofail_save(void) { return memscope_save(MEMSCOPE_NOFAIL); }
static inline void memscope_nofail_restore(unsigned s) { memscope_restore(s); }
MEMSCOPE__PUSH_INLINE unsigned memscope_nowarn_save(void) { return memscope_save(MEMSCOPE_NOWARN); }
static inline void memscope_nowarn_restore(unsigned s) { memscope_restore(s); }
static inline unsigned memscope_nofs_save(void) { return memscope_save(MEMSCOPE_NOFS); }
static inline void memscope_nofs_restore(unsigned s) { memscope_restore(s); }
static inline unsigned memscope_noio_save(void) { return memscope_save(MEMSCOPE_NOIO); }
static inline void memscope_noio_restore(unsigned s) { memscope_restore(s); }

static inline unsigned memscope_current_flags(void) { return memscope_current(); }

/* Block scope, left automatically on every exit from the block (return,
 * break, goto out of it):
 *
 *     {
 *         MEMSCOPE_SCOPE(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
 *         node = malloc(sizeof *node);   // from the pre-faulted pool
 *     }
 */
static inline void memscope__cleanup(unsigned *saved) { memscope_restore(*saved); }
#define MEMSCOPE__CAT2(a, b) a##b
#define MEMSCOPE__CAT(a, b) MEMSCOPE__CAT2(a, b)
#define MEMSCOPE_SCOPE(flags)                                                  \
    unsigned MEMSCOPE__CAT(memscope__saved_, __LINE__)                         \
        __attribute__((cleanup(memscope__cleanup), unused)) = memscope_save(flags)

#ifdef __cplusplus
}
#endif

#endif /* MEMSCOPE_H */
