/* sigstop.c - hostile lab: reaches the first checkpoint, then stops itself
 * with SIGSTOP (nobody will send SIGCONT). Every run must end at the time
 * limit, and the stopped process must be killed. */
#include "memlab.h"

#include <signal.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    ml_checkpoint("start");
    raise(SIGSTOP);
    return 0;
}
