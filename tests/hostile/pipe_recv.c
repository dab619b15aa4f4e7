/* pipe_recv.c - hostile lab: announces checkpoint "start" by hand on
 * MEMLAB_FD, then blocks forever in read() on a pipe of its own (which looks,
 * from /proc/<pid>/syscall, like waiting for the grader), so it never sees
 * the grader's "go". Every run must end at the time limit. */
#include "memlab.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    int fd = atoi(getenv("MEMLAB_FD"));
    int p[2];
    if (pipe(p) < 0)
        ml_die("pipe");
    send(fd, "cp start", 8, MSG_NOSIGNAL);
    char c;
    for (;;)
        if (read(p[0], &c, 1) < 0)
            ml_die("read");
}
