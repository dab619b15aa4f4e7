/* signal_others.c - sandbox-hostile lab: signals every process it can name:
 * kill(-1), its parent, pid 1, a victim process of the host (VICTIM_PID in paths.h),
 * and every pid up to 65536, with SIGKILL.
 * Expected: nothing outside the sandbox dies (the grader and the victim live on),
 * 0 points (exit 3). */
#include "memlab.h"
#include "paths.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    printf("kill(-1): %d\n", kill(-1, SIGKILL));
    printf("kill(parent %d): %d\n", (int)getppid(), kill(getppid(), SIGKILL));
    printf("kill(1): %d\n", kill(1, SIGKILL));
    printf("kill(victim %d): %d\n", VICTIM_PID, kill(VICTIM_PID, SIGKILL));
    int hits = 0;
    for (pid_t p = 2; p < 65536; p++)
        if (p != getpid() && kill(p, SIGKILL) == 0)
            hits++;
    printf("other pids signalled: %d\n", hits);
    fflush(stdout);
    return 3;
}
