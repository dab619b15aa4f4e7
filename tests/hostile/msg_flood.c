/* msg_flood.c - hostile lab: reports figures in a tight loop forever
 * (ml_report_long). The grader must stop it with "more than 200000 grader
 * messages". */
#include "memlab.h"

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    for (long long i = 0;; i++)
        ml_report_long("touch_minflt", i);
}
