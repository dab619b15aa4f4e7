/* close_fd.c - hostile lab: connects, then closes MEMLAB_FD behind the
 * library's back and goes on like a lab (its checkpoints and figures go
 * nowhere), printing plausible output, and exits 0. The checks must say the
 * lab never reached its checkpoints. */
#include "memlab.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    close(atoi(getenv("MEMLAB_FD")));
    ml_checkpoint("start");
    ml_report_long("mmap_minflt", 0);
    ml_checkpoint("mapped");
    ml_report_long("touch_minflt", 30720);
    ml_checkpoint("touched");
    ml_checkpoint("done");
    printf("faults: plain variant\n  touched every page: 30720 minor faults\n");
    return 0;
}
