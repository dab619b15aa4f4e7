/* leftover.c - sandbox-hostile lab: leaves a daemon behind (double fork, setsid,
 * SIGHUP/SIGTERM ignored) that would run for an hour; the main process exits 0
 * at once, having done nothing of the lab.
 * Expected: 0 points, and no process of the slot's uid alive on the host after the run. */
#include "memlab.h"

#include <signal.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    if (fork() == 0) {
        setsid();
        signal(SIGHUP, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        if (fork() == 0) {
            for (int i = 0; i < 3600; i++)
                sleep(1);
            _exit(0);
        }
        _exit(0);
    }
    usleep(100000);
    return 0;
}
