/* stderr_flood.c - hostile lab: writes error-looking lines to stderr forever.
 * The grader must stop it with "output flood". */
#include "memlab.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    for (unsigned long i = 0;; i++)
        fprintf(stderr, "faults: warning %lu: something is not quite right here\n", i);
}
