/* busy_loop.c - hostile lab: connects, then spins forever in user mode.
 * Every run must be stopped at the (short) time limit and killed. */
#include "memlab.h"

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    for (volatile unsigned long i = 0;; i++)
        ;
}
