/* write_outside.c - sandbox-hostile lab: tries to write outside its work folder:
 * a sentinel file of the host, a new file in the host's /tmp, the course tree, its
 * own binary, /etc, and up from its folder.
 * Expected: every write fails or lands in the sandbox's private /tmp, the host
 * untouched, 0 points (exit 3). */
#include "memlab.h"
#include "paths.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void try_write(const char *path, int flags)
{
    int fd = open(path, O_WRONLY | flags, 0666);
    if (fd < 0) {
        printf("%s: cannot open\n", path);
        return;
    }
    const char *text = "OVERWRITTEN BY A STUDENT\n";
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    printf("%s: wrote %zd bytes\n", path, n);
}

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    try_write(SENTINEL, O_TRUNC);
    try_write(HOST_TMP_FILE, O_CREAT | O_TRUNC);
    try_write(COURSE_ROOT "/Makefile", O_TRUNC);
    try_write(COURSE_ROOT "/evil", O_CREAT);
    try_write("/etc/passwd", O_APPEND);
    try_write("/usr/evil", O_CREAT);
    try_write("../evil", O_CREAT);
    try_write("/evil", O_CREAT);
    try_write(argv[0], O_TRUNC);
    fflush(stdout);
    return 3;
}
