/* pause_forever.c - hostile lab: connects, then blocks forever in pause()
 * (no CPU used, no output). Every run must end at the time limit. */
#include "memlab.h"

#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    for (;;)
        pause();
}
