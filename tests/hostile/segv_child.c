/* segv_child.c - hostile lab: a forked child reaches a checkpoint, then
 * segfaults while the parent waits for it; the parent gives up with
 * ml_die() (exit status 1). The grader must record the child's checkpoint
 * (role "child") and fail every check with "exited with status 1". */
#include "memlab.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    printf("faults: forking a worker\n");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        ml_die("fork");
    if (pid == 0) {
        ml_checkpoint("worker");
        *(volatile int *)0 = 1;
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        ml_die("waitpid");
    if (WIFSIGNALED(status))
        ml_die("the worker was killed by signal %d", WTERMSIG(status));
    return 0;
}
