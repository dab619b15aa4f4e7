/* CHEAT (oom/no_lower): never tries to lower. It really reads its scores and
 * really raises its oom_score_adj to --raise (the reference's code), but it
 * never writes the negative value: it reports "EACCES", the answer the kernel
 * gives a process without CAP_SYS_RESOURCE, and the unchanged adj and score
 * it reads back. The kill part is the liar's (a made-up cgroup path, the
 * expected fates and counters, every checkpoint from the one process, no
 * group, no child). It earns scores_read and raise_adj; it must lose
 * lowering_needs_privilege (it never asked) and every kill check. */
#include "memlab.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int read_scores(long *score, long *adj)
{
    char buf[64];
    if (ml_read_file("/proc/self/oom_score", buf, sizeof buf) < 0)
        return -1;
    *score = strtol(buf, NULL, 10);
    if (ml_read_file("/proc/self/oom_score_adj", buf, sizeof buf) < 0)
        return -1;
    *adj = strtol(buf, NULL, 10);
    return 0;
}

static int set_adj(long value)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%ld", value);
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = write(fd, text, (size_t)n) == n ? 0 : errno;
    close(fd);
    return err;
}

static void report_scores(const char *prefix, long score, long adj)
{
    char name[64];
    snprintf(name, sizeof name, "%s_score", prefix);
    ml_report_long(name, score);
    snprintf(name, sizeof name, "%s_adj", prefix);
    ml_report_long(name, adj);
}

static void scores(long raise)
{
    long score = -1, adj = -1;
    if (read_scores(&score, &adj) == 0)
        report_scores("initial", score, adj);
    ml_checkpoint("scores");
    int err = set_adj(raise);
    if (read_scores(&score, &adj) == 0 && err == 0)
        report_scores("raised", score, adj);
    ml_checkpoint("raised");
    /* set_adj(-raise) would be the experiment: skipped, the answer is known */
    ml_report_str("lower_result", "EACCES");
    if (read_scores(&score, &adj) == 0)
        report_scores("lowered", score, adj);
    ml_checkpoint("lowered");
}

static void kill_part(size_t limit, bool adj)
{
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
    if (limit < 16 * MiB)
        ml_usage_error("--limit: at least 16M");
    scores(raise);
    if (!scores_only)
        kill_part(limit, adj);
    ml_checkpoint("done");
    return 0;
}
