/* no_init.c - hostile lab: never calls ml_init(), so it never connects to the
 * grader; it only prints text that looks like the real lab's output and exits
 * 0. Every check must fail with "never connected to the grader" (plain text
 * on stdout earns nothing). */
#include "memlab.h"

#include <stdio.h>

int main(void)
{
    printf("faults: plain variant, 120 MiB = 30720 pages of 4 KiB\n\n");
    printf("  step              minflt   majflt   anon MiB   huge MiB\n");
    printf("  start                  0        0        0.1        0.0   before mmap()\n");
    printf("  mapped                 1        0        0.1        0.0   addresses reserved\n");
    printf("  touched            30720        0      120.1        0.0   one minor fault per page\n");
    printf("\n30720 pages touched for 30720 minor faults (1.000 per page).\n");
    return 0;
}
