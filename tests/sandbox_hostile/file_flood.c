/* file_flood.c - sandbox-hostile lab: writes one file in its work folder without end.
 * Expected: killed at the file-size limit (SIGXFSZ), 0 points, the file removed. */
#include "memlab.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    static char block[1 << 20];
    memset(block, 'W', sizeof block);
    int fd = open("flood.bin", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 2;
    for (;;)
        if (write(fd, block, sizeof block) < 0)
            return 3;
}
