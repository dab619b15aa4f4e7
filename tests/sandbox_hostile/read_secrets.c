/* read_secrets.c - sandbox-hostile lab: tries to read other students' files, the
 * grader's files and system secrets, and prints whatever it could read.
 * paths.h (written by tests/test_sandbox.py) names the files to try.
 * Expected: every open fails (or finds nothing secret), 0 points (exit 3). */
#include "memlab.h"
#include "paths.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void try_read(const char *path)
{
    char buf[512];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("%s: cannot open\n", path);
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = '\0';
    printf("%s: READ %s\n", path, buf);
}

static void list(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        printf("%s/: cannot list\n", path);
        return;
    }
    struct dirent *e;
    printf("%s/:", path);
    while ((e = readdir(d)))
        printf(" %s", e->d_name);
    printf("\n");
    closedir(d);
}

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    const char *files[] = {SECRET_OTHER, SECRET_GRADER, SOLUTION_FILE, GRADER_FILE,
                           "/etc/shadow", "/etc/passwd", "/root/.bash_history",
                           "/proc/1/environ", "/proc/self/environ", "../../../../../../etc/shadow",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        try_read(files[i]);
    const char *dirs[] = {"/", "/etc", "/tmp", "..", SECRET_DIR, COURSE_ROOT, "/home", "/root"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
        list(dirs[i]);
    fflush(stdout);
    return 3;
}
