/* CHEAT (oom/printer): the liar (the textbook scores, EACCES, the expected
 * fates, one OOM kill, a peak equal to the limit, every checkpoint from the
 * one process) that also prints the reference lab's human story with those
 * numbers, and makes its cgroup path real: it creates the group and sets its
 * limit, but puts nobody in it, so the path the grader reads is a genuine,
 * limited, empty memlab group. No adj is written, nothing is forked, nothing
 * runs into the limit. Must score 0 on everything but the pure "it ran"
 * check. */
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
    long score0 = 1000 * 2 / 3, score1 = (1000 + raise) * 2 / 3;

    printf("oom: the OOM killer's choice\n\n");
    ml_report_long("initial_score", score0);
    ml_report_long("initial_adj", 0);
    printf("  at start:        oom_score %4ld   oom_score_adj %5d\n", score0, 0);
    ml_checkpoint("scores");
    ml_report_long("raised_score", score1);
    ml_report_long("raised_adj", raise);
    printf("  adj := %-5ld      ok: oom_score %4ld   oom_score_adj %5ld\n", raise, score1, raise);
    ml_checkpoint("raised");
    ml_report_str("lower_result", "EACCES");
    ml_report_long("lowered_score", score1);
    ml_report_long("lowered_adj", raise);
    printf("  adj := %-5ld     EACCES: oom_score %4ld   oom_score_adj %5ld\n", -raise, score1, raise);
    printf("  Lowering below where we started needs CAP_SYS_RESOURCE; raising never does.\n");
    ml_checkpoint("lowered");

    if (!scores_only) {
        struct ml_cgroup cg;
        char why[512];
        bool real = ml_cgroup_create(&cg, "memlab-oom", why, sizeof why) == 0;
        if (real) {
            ml_cgroup_guard(&cg);
            ml_cgroup_set_limit(&cg, limit);        /* a real, limited, empty group */
            ml_report_str("cgroup", cg.path);
        } else {
            ml_report_str("cgroup", "/sys/fs/cgroup/memory/memlab-oom");
        }
        ml_report_long("limit", (long long)limit);
        printf("\ncgroup v1 %s\n  limit %zu MiB: bystander holds %zu MiB (oom_score_adj %d), "
               "allocator asks for %zu MiB\n", real ? cg.path : "/sys/fs/cgroup/memory/memlab-oom",
               limit / MiB, limit / 4 / MiB, adj ? 1000 : 0, (limit - limit / 8 - limit / 16) / MiB);
        ml_checkpoint("bystander_holding");
        ml_checkpoint("allocator_start");
        if (adj)
            ml_checkpoint("allocator_done");
        const char *afate = adj ? "completed" : "killed by SIGKILL";
        const char *bfate = adj ? "killed by SIGKILL" : "alive";
        ml_report_str("allocator_fate", afate);
        ml_report_str("bystander_fate", bfate);
        ml_report_long("group_oom_kill", 1);
        ml_report_long("group_peak", (long long)limit);
        ml_checkpoint("after_oom");
        printf("  allocator: %s\n  bystander: %s%s\n", afate, bfate, adj ? "" : " (holding its memory)");
        printf("  the group counted 1 OOM kill(s); its peak was %.1f MiB of %zu MiB\n",
               (double)limit / MiB, limit / MiB);
        if (adj)
            printf("  oom_score_adj 1000 made the bystander the victim, although it was smaller and\n"
                   "  asked for nothing.\n");
        else
            printf("  With equal adj the biggest process, the allocator, was the victim.\n");
        if (real)
            ml_cgroup_destroy(&cg);
    }
    ml_checkpoint("done");
    return 0;
}
