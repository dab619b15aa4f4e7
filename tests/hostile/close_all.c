/* close_all.c - hostile lab: connects, then closes stdout, stderr and
 * MEMLAB_FD, keeps working for half a second, and exits with status 4. With
 * every stream closed the grader has nothing left to read, but the lab still
 * runs: its end must be waited for (within the time limit), not cut short
 * with SIGKILL. The checks must say "exited with status 4". */
#include "memlab.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    printf("faults: closing everything\n");
    fflush(stdout);
    close(atoi(getenv("MEMLAB_FD")));
    close(1);
    close(2);
    struct timespec ts = {0, 500 * 1000000L};
    nanosleep(&ts, NULL);
    return 4;
}
