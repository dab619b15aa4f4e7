/* files_flood.c - sandbox-hostile lab: fills its work folder with files, each
 * under the file-size limit (1 MiB), without end.
 * Expected: stopped at the disk limit of the work folder, 0 points. */
#include "memlab.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    static char block[1 << 20];
    memset(block, 'D', sizeof block);
    for (long i = 0;; i++) {
        char name[64];
        snprintf(name, sizeof name, "f%06ld", i);
        int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            return 2;
        if (write(fd, block, sizeof block) < 0)
            return 3;
        close(fd);
    }
}
