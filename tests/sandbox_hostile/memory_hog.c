/* memory_hog.c - sandbox-hostile lab: allocates and touches memory far past any
 * cap (16 GiB, 64 MiB at a time, never freed).
 * Expected: killed at the memory limit (the run cgroup's own OOM kill), 0 points.
 * NEVER run it outside the sandbox. */
#include "memlab.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    for (int i = 0; i < 256; i++) {
        char *p = malloc(64u << 20);
        if (!p)
            continue;
        memset(p, 0x5a, 64u << 20);
    }
    return 0;
}
