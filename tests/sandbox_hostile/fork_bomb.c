/* fork_bomb.c - sandbox-hostile lab: forks without end (every child forks too).
 * Expected: stopped at the process limit (the run's pids cgroup), 0 points, nothing
 * left behind. NEVER run it outside the sandbox. */
#include "memlab.h"

#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    for (;;)
        fork();
}
