/* stdout_flood.c - hostile lab: writes to stdout forever (about 1 MiB per
 * write). The grader must stop it with "output flood" and keep only a bounded
 * part of the output. */
#include "memlab.h"

#include <string.h>
#include <unistd.h>

static char block[1 << 20];

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    memset(block, 'y', sizeof block);
    for (size_t i = 79; i < sizeof block; i += 80)
        block[i] = '\n';
    for (;;)
        if (write(1, block, sizeof block) < 0)
            return 1;
}
