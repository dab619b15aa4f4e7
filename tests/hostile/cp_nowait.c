/* cp_nowait.c - hostile lab: announces every checkpoint by hand on MEMLAB_FD
 * ("cp start", "cp mapped", ...) but never waits for the grader's "go": it
 * goes on printing, then exits 0. The grader must not wait long for it and
 * the checks must say "did not wait for the grader". */
#include "memlab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    int fd = atoi(getenv("MEMLAB_FD"));
    static const char *const names[] = {"start", "mapped", "touched", "done"};
    for (int i = 0; i < 4; i++) {
        char msg[64];
        int n = snprintf(msg, sizeof msg, "cp %s", names[i]);
        send(fd, msg, (size_t)n, MSG_NOSIGNAL);
        printf("faults: at %s (not waiting)\n", names[i]);
        fflush(stdout);
        nap(50);
    }
    return 0;
}
