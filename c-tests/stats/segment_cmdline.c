/* The stats segment's command line (what memscope-stat lists) is the
 * program's arguments, and comes from the argv glibc hands the library's
 * constructor rather than from /proc/self/cmdline (an open, two reads and
 * a close, ~30 us of every exec: docs/DESIGN.md). A fork child reads the
 * file again (a server that retitles its children shows the title there).
 *
 * Run with arguments (the runner passes "two words" and "x"). The program
 * interposes open/open64, which memscope calls through the PLT, to count
 * opens of /proc/self/cmdline; it then compares the segment's command line,
 * found through its mapping in /proc/self/maps, with its own argv.
 *
 * Built twice: alone, and with -DEARLY linked to libearly_alloc.so, whose
 * constructor allocates before memscope's initialiser has run (as
 * libstdc++'s does in every C++ program), so that the segment is made
 * before the arguments are known; it must show the command line once the
 * initialiser has run, still without reading the file. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "segment_find.h"

static volatile int cmdline_opens;

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    if (strcmp(path, "/proc/self/cmdline") == 0)
        cmdline_opens++;
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

/* The library imports both names; they are one function in glibc too. */
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

/* The segment's command line equals argv, NUL after each argument. */
static int matches_argv(const struct memscope_stats_header *h, int argc, char **argv)
{
    char want[MEMSCOPE_STATS_CMDLINE_MAX];
    size_t len = 0;
    for (int i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]) + 1;
        if (len + n > sizeof want)
            return 0;
        memcpy(want + len, argv[i], n);
        len += n;
    }
    if (h->cmdline_len != len || memcmp(h->cmdline, want, len) != 0) {
        say("segment command line: %u bytes, \"%.*s\"; argv: %zu bytes\n", h->cmdline_len,
            (int)h->cmdline_len, h->cmdline, len);
        return 0;
    }
    return 1;
}

#ifdef EARLY
/* libearly_alloc.so: the segment's command-line length its constructor
 * saw, after allocating (-1: no segment then). */
extern int early_cmdline_len;
#endif

int main(int argc, char **argv)
{
    CHECK(argc == 3 && strcmp(argv[1], "two words") == 0);
#ifdef EARLY
    /* Made by the early allocation, before the arguments were known. */
    CHECK(early_cmdline_len == 0);
#endif
    const struct memscope_stats_header *h = segment();
    CHECK(h != NULL);
    if (!h)
        return 1;
    CHECK(matches_argv(h, argc, argv));
    CHECK(cmdline_opens == 0);

    int opens_before = cmdline_opens;
    pid_t child = fork();
    if (child == 0) {
        void *volatile p = malloc(64);
        free(p);
        const struct memscope_stats_header *c = segment(); /* memscope.<its pid> */
        CHECK(c != NULL);
        if (c)
            CHECK(matches_argv(c, argc, argv));
        CHECK(cmdline_opens == opens_before + 1);
        _exit(check_failures);
    }
    int status;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return check_failures;
}
