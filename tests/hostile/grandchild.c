/* grandchild.c - hostile lab: a double fork; the grandchild (still in the
 * lab's process group) reports its pid as figure "grandchild_pid" and sleeps
 * 1000 s holding stdout open; the child exits at once, and the parent exits 0
 * once the grandchild has reported. The grader must not wait for end of file
 * on stdout forever, and the grandchild must be killed. */
#include "memlab.h"

#include <stdio.h>
#include <sys/wait.h>
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
        if (fork() == 0) {
            ml_report_long("grandchild_pid", (long long)getpid());
            if (write(p[1], "x", 1) < 0)
                _exit(1);
            for (int i = 0; i < 1000; i++)
                sleep(1);
        }
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    char c;
    if (read(p[0], &c, 1) != 1)
        ml_die("read");
    printf("faults: done (the grandchild keeps stdout open)\n");
    return 0;
}
