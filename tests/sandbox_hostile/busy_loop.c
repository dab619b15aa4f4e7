/* busy_loop.c - sandbox-hostile lab: spins on the CPU for ever.
 * Expected: stopped by the CPU-time limit (SIGXCPU), 0 points. */
#include "memlab.h"

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    volatile unsigned long n = 0;
    for (;;)
        n++;
}
