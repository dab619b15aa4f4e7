/* blocked.c - sandbox-hostile lab: blocks for ever in read() on a pipe nobody
 * writes (it holds the write end itself), using no CPU.
 * Expected: stopped at the wall-clock time limit, 0 points. */
#include "memlab.h"

#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    int p[2];
    if (pipe(p) < 0)
        return 1;
    char c;
    for (;;)
        if (read(p[0], &c, 1) < 0)
            pause();
}
