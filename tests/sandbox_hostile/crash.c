/* crash.c - sandbox-hostile lab: dereferences NULL after connecting.
 * Expected: killed by SIGSEGV (the sandbox reports the signal, not bwrap's 139), 0 points. */
#include "memlab.h"

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    volatile int *p = 0;
    return *p;
}
