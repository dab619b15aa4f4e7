/* exit3.c - hostile lab: reaches the first checkpoint, reports a figure,
 * then exits with status 3. Every check must fail with "exited with status 3". */
#include "memlab.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    ml_checkpoint("start");
    ml_report_long("mmap_minflt", 0);
    fprintf(stderr, "faults: something went wrong\n");
    exit(3);
}
