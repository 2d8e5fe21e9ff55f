/* segment_find.h: the header of this process's stats segment, found
 * through its mapping in /proc/self/maps (read with raw syscalls, so that
 * a test interposing open() does not count it). */
#ifndef MEMSCOPE_SEGMENT_FIND_H
#define MEMSCOPE_SEGMENT_FIND_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "memscope_stats.h"

/* The header of this process's segment, from its mapping; NULL if none. */
static inline const struct memscope_stats_header *segment(void)
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

#endif
