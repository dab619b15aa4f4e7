/* abort.c - hostile lab: reaches the first checkpoint, then calls abort().
 * Every check must fail with "killed by SIGABRT". */
#include "memlab.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    ml_checkpoint("start");
    printf("faults: giving up\n");
    abort();
}
