/* usage.c - resource usage and /proc snapshots of this process. */
#include "memlab.h"

#include <sys/resource.h>

void ml_usage_now(struct ml_usage *u)
{
    struct rusage r;
    if (getrusage(RUSAGE_SELF, &r) < 0)
        ml_die("getrusage");
    u->minflt = r.ru_minflt;
    u->majflt = r.ru_majflt;
    u->maxrss_kb = r.ru_maxrss;
}

void ml_snapshot_now(struct ml_snapshot *s)
{
    if (ml_read_status(0, &s->st) < 0)
        ml_die("read /proc/self/status");
    if (ml_read_smaps_rollup(0, &s->ro) < 0)
        ml_die("read /proc/self/smaps_rollup");
    /* the fault counters last: reading the files above may itself fault (its
     * stack buffers, right after a fork), and those faults belong before the
     * moment this snapshot describes */
    ml_usage_now(&s->ru);
}
