/* output_flood.c - sandbox-hostile lab: writes to stdout and stderr without end.
 * Expected: stopped by the grader's output limit ("output flood"), 0 points. */
#include "memlab.h"

#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    static char line[65536];
    memset(line, 'F', sizeof line);
    for (;;) {
        if (write(1, line, sizeof line) < 0 || write(2, line, sizeof line) < 0)
            return 2;
    }
}
