/* leftover.c - hostile lab: forks a child that leaves the process group
 * (setsid()), reports its pid as figure "leftover_pid" and sleeps 1000 s
 * holding stdout, stderr and the channel open; the parent exits 0 as soon as
 * the child has reported. The grader must not wait for the child, and must
 * kill it (no process of the lab may survive the grading). */
#include "memlab.h"

#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    int p[2];
    if (pipe(p) < 0)
        ml_die("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        ml_die("fork");
    if (pid == 0) {
        setsid();
        ml_report_long("leftover_pid", (long long)getpid());
        if (write(p[1], "x", 1) < 0)
            _exit(1);
        for (int i = 0; i < 1000; i++)
            sleep(1);
        _exit(0);
    }
    char c;
    if (read(p[0], &c, 1) != 1)
        ml_die("read");
    printf("faults: done (a helper is still running)\n");
    return 0;
}
