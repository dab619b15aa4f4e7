/* CHEAT (cgroup/liar): parses the options like the real lab, creates the real
 * memory cgroup and sets its limit (so the path it reports is a genuine,
 * limited memlab group), and then puts nobody in it: no file, no child, no
 * anonymous memory. It reports the textbook figures at every checkpoint (the
 * cache charged, then mostly reclaimed for the anonymous memory, then one OOM
 * kill at a peak equal to the limit, the child "killed by SIGKILL"), sends
 * every checkpoint from the one process, and reports a made-up address for
 * its 16 MiB "outside" buffer. Must score 0 on everything but the pure "it
 * ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>

static void report(const char *prefix, long long usage, long long file, long long anon,
                   long long peak, long long oom_kill)
{
    char name[64];
    const struct { const char *k; long long v; } f[] = {
        {"usage", usage}, {"file", file}, {"anon", anon}, {"peak", peak},
        {"oom_kill", oom_kill}, {"pressure_us", -1},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, f[i].k);
        ml_report_long(name, f[i].v);
    }
}

int main(int argc, char **argv)
{
    ml_init("cgroup", argc, argv);
    size_t limit = 64 * MiB, cache = 0, anon = 0;
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'},
        {"cache", required_argument, NULL, 'c'},
        {"anon", required_argument, NULL, 'a'},
        {"dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "l:c:a:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': limit = ml_parse_size(optarg, "--limit"); break;
        case 'c': cache = ml_parse_size(optarg, "--cache"); break;
        case 'a': anon = ml_parse_size(optarg, "--anon"); break;
        case 'd': break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (limit < 32 * MiB)
        ml_usage_error("--limit: at least 32M");
    if (cache == 0)
        cache = limit / 10 * 6;
    if (anon == 0)
        anon = limit / 10 * 7;
    long long L = (long long)limit, C = (long long)cache, A = (long long)anon;

    struct ml_cgroup cg;
    char why[512];
    if (ml_cgroup_create(&cg, "memlab-cgroup", why, sizeof why) < 0) {
        ml_report_str("cgroup_error", why);
        ml_checkpoint("done");
        return 0;
    }
    ml_cgroup_guard(&cg);
    ml_cgroup_set_limit(&cg, limit);
    ml_report_str("cgroup", cg.path);
    ml_report_long("cgroup_version", cg.version);
    ml_report_addr("outside", (void *)0x7f3a5c000000UL);
    ml_report_long("outside_len", 16 * MiB);
    ml_checkpoint("created");

    report("cached", C + 256 * 1024, C, 256 * 1024, C + 256 * 1024, 0);
    ml_checkpoint("cached");
    report("anon", L - MiB, L - MiB - A, A, L, 0);
    ml_checkpoint("anon");
    ml_report_str("child_fate", "killed by SIGKILL");
    report("after", 0, 0, 0, L, 1);
    ml_checkpoint("after_oom");
    ml_cgroup_destroy(&cg);
    ml_checkpoint("done");
    return 0;
}
