/* go_unread.c - hostile lab: its main thread blocks forever in read() on a
 * pipe of its own (which, from /proc/<pid>/syscall, looks like waiting for the
 * grader) while a second thread announces 2000 checkpoints by hand and never
 * reads the grader's answers. The unread "go" packets fill the lab's socket;
 * the grader must not block sending more of them, and must stop the run at
 * the time limit. */
#include "memlab.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int fd;

static void *announce(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++)
        if (send(fd, "cp start", 8, MSG_NOSIGNAL) < 0)
            break;
    return NULL;
}

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    fd = atoi(getenv("MEMLAB_FD"));
    int p[2];
    if (pipe(p) < 0)
        ml_die("pipe");
    pthread_t t;
    if (pthread_create(&t, NULL, announce, NULL) != 0)
        ml_die("pthread_create");
    char c;
    for (;;)
        if (read(p[0], &c, 1) < 0)
            ml_die("read");
}
