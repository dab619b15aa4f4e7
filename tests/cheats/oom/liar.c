/* CHEAT (oom/liar): parses the options like the real lab and reports the
 * textbook answer without doing anything: the scores of a small process with
 * oom_score_adj 0 ((1000 + adj) * 2 / 3 = 666), "raised" to --raise, lowering
 * refused with EACCES, a made-up cgroup path (never created), the limit, the
 * fates the lab should see (the bystander "killed by SIGKILL" and the
 * allocator "completed" with the adj; the reverse with --no-adj), one OOM kill
 * and a peak equal to the limit. Every checkpoint is sent, all from the one
 * process: it never writes its oom_score_adj, never creates a group, never
 * forks, never runs anything into a limit. Must score 0 on everything but the
 * pure "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("oom", argc, argv);
    size_t limit = 64 * MiB;
    long raise = 500;
    bool adj = true, scores_only = false;
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'},
        {"raise", required_argument, NULL, 'r'},
        {"no-adj", no_argument, NULL, 'n'},
        {"scores-only", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "l:r:nsh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': limit = ml_parse_size(optarg, "--limit"); break;
        case 'r': raise = ml_parse_long(optarg, "--raise", 1, 1000); break;
        case 'n': adj = false; break;
        case 's': scores_only = true; break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }

    /* proc_oom_score(): (1000 + badness * 1000 / totalpages) * 2 / 3, and a
     * small process's badness is about its adj times totalpages / 1000 */
    ml_report_long("initial_score", 1000 * 2 / 3);
    ml_report_long("initial_adj", 0);
    ml_checkpoint("scores");
    ml_report_long("raised_score", (1000 + raise) * 2 / 3);
    ml_report_long("raised_adj", raise);
    ml_checkpoint("raised");
    ml_report_str("lower_result", "EACCES");
    ml_report_long("lowered_score", (1000 + raise) * 2 / 3);
    ml_report_long("lowered_adj", raise);
    ml_checkpoint("lowered");

    if (!scores_only) {
        char path[128];
        snprintf(path, sizeof path, "/sys/fs/cgroup/memory/memlab-oom-%d", (int)getpid());
        ml_report_str("cgroup", path);
        ml_report_long("limit", (long long)limit);
        ml_checkpoint("bystander_holding");
        ml_checkpoint("allocator_start");
        if (adj)
            ml_checkpoint("allocator_done");
        ml_report_str("allocator_fate", adj ? "completed" : "killed by SIGKILL");
        ml_report_str("bystander_fate", adj ? "killed by SIGKILL" : "alive");
        ml_report_long("group_oom_kill", 1);
        ml_report_long("group_peak", (long long)limit);
        ml_checkpoint("after_oom");
    }
    ml_checkpoint("done");
    return 0;
}
