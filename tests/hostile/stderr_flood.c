/* stderr_flood.c - hostile lab: writes error-looking lines to stderr forever
 * (64 KiB of them per write). The grader must stop it with "output flood". */
#include "memlab.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char block[64 * 1024];

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    static const char line[] = "faults: warning: something is not quite right here\n";
    size_t n = 0;
    while (n + sizeof line - 1 <= sizeof block) {
        memcpy(block + n, line, sizeof line - 1);
        n += sizeof line - 1;
    }
    for (;;)
        if (write(2, block, n) < 0)
            return 1;
}
