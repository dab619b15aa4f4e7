/* segv_start.c - hostile lab: connects to the grader, then dereferences NULL
 * right away (SIGSEGV before any checkpoint). Every check must fail with
 * "killed by SIGSEGV". */
#include "memlab.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    printf("faults: starting\n");
    fflush(stdout);
    *(volatile int *)0 = 1;
    return 0;
}
