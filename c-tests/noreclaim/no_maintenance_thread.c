/* The maintenance thread cannot start (clone refused, as under
 * RLIMIT_NPROC, a cgroup's pids.max or a sandbox): the first NORECLAIM
 * push says so once and counts it, and later pushes, pops and allocations
 * in scope make no syscall; they used to retry the start on every push,
 * and the second push under a write-only seccomp filter died of SIGSYS. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "memscope.h"
#include "check.h"
#include "seccomp.h"
#include "segment_find.h"

#ifndef SYS_clone3
#define SYS_clone3 435
#endif

/* Index of `maintenance_start_failures` in the segment's events (the ABI
 * crate's `names::EVENTS`, docs/STATS.md; append-only). */
#define EVENT_MAINTENANCE_START_FAILURES 31

/* clone and clone3 fail with EAGAIN on this thread; all else is allowed. */
static int refuse_threads(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EAGAIN & SECCOMP_RET_DATA)),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static void *volatile sink;

int main(void)
{
    CHECK(memscope_loaded());
    if (!memscope_loaded())
        return check_result();
    free(malloc(1));
    const struct memscope_stats_header *h = segment();
    CHECK(h != NULL);
    CHECK(refuse_threads() == 0);
    /* The first scope makes the pool and tries to start the thread. */
    unsigned s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
    free(malloc(64));
    memscope_pop(s);
    /* From here on any syscall but write and exit_group kills us. */
    static const long allowed[] = {SYS_write, SYS_exit_group};
    CHECK(allow_only_syscalls(allowed, 2) == 0);
    int served = 0;
    for (int i = 0; i < 1000; i++) {
        s = memscope_push(MEMSCOPE_NORECLAIM | MEMSCOPE_NOWARN);
        void *p = malloc(16 + (size_t)(i % 200));
        if (p) {
            served++;
            sink = p;
        }
        free(p);
        memscope_pop(s);
    }
    CHECK(served > 0);
    if (h) {
        uint64_t failures = __atomic_load_n(&h->events[EVENT_MAINTENANCE_START_FAILURES], __ATOMIC_RELAXED);
        /* One attempt: the scope's set-up; none from the pushes since. */
        CHECK(failures == 1);
        say("maintenance_start_failures %llu, %d of 1000 served\n", (unsigned long long)failures, served);
    }
    /* _exit: the exit handler's unlink of the stats segment is forbidden. */
    _exit(check_result());
}
