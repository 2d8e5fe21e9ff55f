/* The stats segment's command line (what memscope-stat lists) is the
 * program's arguments, and comes from the argv glibc hands the library's
 * constructor rather than from /proc/self/cmdline (an open, two reads and
 * a close, ~30 us of every exec: docs/DESIGN.md). A fork child reads the
 * file again (a server that retitles its children shows the title there).
 *
 * Run with arguments (the runner passes "two words" and "x"). The program
 * interposes open/open64, which memscope calls through the PLT, to count
 * opens of /proc/self/cmdline; it then compares the segment's command line,
 * found through its mapping in /proc/self/maps, with its own argv. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "memscope_stats.h"

static volatile int cmdline_opens;

static int open_counted(const char *path, int flags, va_list ap)
{
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    if (strcmp(path, "/proc/self/cmdline") == 0)
        cmdline_opens++;
    return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int fd = open_counted(path, flags, ap);
    va_end(ap);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int fd = open_counted(path, flags, ap);
    va_end(ap);
    return fd;
}

/* The header of this process's segment, from its mapping; NULL if none. */
static const struct memscope_stats_header *segment(void)
{
    char maps[1 << 16];
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/maps", O_RDONLY);
    if (fd < 0)
        return NULL;
    size_t len = 0;
    ssize_t n;
    while (len < sizeof maps - 1 && (n = read(fd, maps + len, sizeof maps - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    maps[len] = 0;
    char want[64];
    snprintf(want, sizeof want, "/memscope.%d", (int)getpid());
    for (char *line = maps; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char *end = strchr(line, '\n');
        if (end)
            *end = 0;
        char *name = strstr(line, want);
        int ours = name && (name[strlen(want)] == 0 || name[strlen(want)] == ' ');
        if (end)
            *end = '\n';
        if (ours)
            return (const struct memscope_stats_header *)strtoul(line, NULL, 16);
    }
    return NULL;
}

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

int main(int argc, char **argv)
{
    CHECK(argc == 3 && strcmp(argv[1], "two words") == 0);
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
