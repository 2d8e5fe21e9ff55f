/* installed_user: a program written against the installed headers only
 * (#include <memscope.h>, <memscope_stats.h>) and built with
 * `pkg-config --cflags --libs memscope`, as a user would. Linked (not
 * preloaded), it gets live scopes, and reads its own stats segment through
 * the C layout: the header, then its thread's slot, which must hold the
 * NOFAIL calls it just made. Run with MEMSCOPE_STATS_DIR set. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memscope.h>
#include <memscope_stats.h>

static int failures;
#define EXPECT(c)                                                                   \
    do {                                                                            \
        if (!(c)) {                                                                 \
            fprintf(stderr, "installed_user: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                             \
        }                                                                           \
    } while (0)

int main(void)
{
    EXPECT(memscope_loaded());
    EXPECT(memscope_version() == MEMSCOPE_VERSION);
    {
        MEMSCOPE_SCOPE(MEMSCOPE_NOFAIL);
        EXPECT(memscope_current() == MEMSCOPE_NOFAIL);
        for (int i = 0; i < 100; i++) {
            void *volatile p = malloc(100);
            EXPECT(p != NULL);
            free(p);
        }
    }
    memscope_stats_flush();

    const char *dir = getenv("MEMSCOPE_STATS_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/memscope.%d", dir ? dir : "/dev/shm", (int)getpid());
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    EXPECT(fd >= 0);
    if (fd < 0)
        return 1;
    static struct memscope_stats_header h;
    EXPECT(pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h);
    EXPECT(memcmp(h.magic, MEMSCOPE_STATS_MAGIC, 8) == 0);
    EXPECT(h.abi_major == MEMSCOPE_STATS_ABI_MAJOR && h.ready == MEMSCOPE_STATS_READY);
    EXPECT(h.pid == (uint32_t)getpid());
    EXPECT(h.slot_size == sizeof(struct memscope_stats_slot));
    uint32_t tid = (uint32_t)syscall(SYS_gettid);
    static struct memscope_stats_slot s;
    int found = 0;
    for (uint32_t i = MEMSCOPE_SLOT_FIRST_THREAD; i < h.slot_count; i++) {
        if (pread(fd, &s, sizeof s, (off_t)(h.slots_offset + (uint64_t)i * h.slot_size)) != (ssize_t)sizeof s)
            break;
        if (s.state == MEMSCOPE_SLOT_LIVE && s.tid == tid) {
            found = 1;
            EXPECT(s.ops[MEMSCOPE_OP_ALLOC][MEMSCOPE_CTX_NOFAIL] == 100);
            EXPECT(s.ops[MEMSCOPE_OP_FREE][MEMSCOPE_CTX_NOFAIL] == 100);
        }
    }
    EXPECT(found);
    close(fd);
    if (failures == 0)
        printf("installed_user: scopes live, own stats slot read through memscope_stats.h\n");
    return failures ? 1 : 0;
}
