/* fork20.c - hostile lab: forks 20 children at once; each reports its pid as
 * figure "kid.<i>.pid" and then passes checkpoint "kid" 5 times, all of them
 * concurrently on the one shared channel. The parent waits for all of them and
 * exits 0. The grader must attribute every checkpoint to the child that sent
 * it (role "child", that child's pid) and finish in time. */
#include "memlab.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIDS 20
#define ROUNDS 5

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    fflush(stdout);
    for (int i = 0; i < KIDS; i++) {
        pid_t pid = fork();
        if (pid < 0)
            ml_die("fork");
        if (pid == 0) {
            char name[32];
            snprintf(name, sizeof name, "kid.%d.pid", i);
            ml_report_long(name, (long long)getpid());
            for (int r = 0; r < ROUNDS; r++)
                ml_checkpoint("kid");
            _exit(0);
        }
    }
    while (wait(NULL) > 0)
        ;
    printf("faults: %d children passed %d checkpoints each\n", KIDS, ROUNDS);
    return 0;
}
