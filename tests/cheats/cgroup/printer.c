/* CHEAT (cgroup/printer): the liar's figures (the cache charged, then mostly
 * reclaimed for the anonymous memory, then one OOM kill at a peak equal to
 * the limit, the child "killed by SIGKILL"), every checkpoint from the one
 * process, a made-up cgroup path (never created), a real 16 MiB buffer filled
 * with 0x6b as the "outside" memory (it really stays intact: nothing ever
 * threatens it), and the reference lab's human story printed with those
 * numbers. No group, no file, no child, no limit reached. Must score 0 on
 * everything but the pure "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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
    printf("  %-22s %8.1f %8.1f %8.1f %8.1f %6lld\n", prefix, usage / (double)MiB,
           file / (double)MiB, anon / (double)MiB, peak / (double)MiB, oom_kill);
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
    char path[128];
    snprintf(path, sizeof path, "/sys/fs/cgroup/memory/memlab-cgroup-%d", (int)getpid());

    printf("cgroup: a %zu MiB memory limit; %zu MiB of page cache, then %zu MiB of anonymous memory\n",
           limit / MiB, cache / MiB, anon / MiB);
    ml_report_str("cgroup", path);
    ml_report_long("cgroup_version", 1);
    size_t outside_len = 16 * MiB;
    char *outside = mmap(NULL, outside_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (outside == MAP_FAILED)
        ml_die("mmap");
    memset(outside, 0x6b, outside_len);
    ml_report_addr("outside", outside);
    ml_report_long("outside_len", (long long)outside_len);
    printf("cgroup v1 %s\nfile ./memlab-cache-%d\n\n", path, (int)getpid());
    printf("  %-22s %8s %8s %8s %8s %6s\n", "step", "usage", "cache", "anon", "peak", "ooms");
    printf("  %-22s %8.1f %8.1f %8.1f %8.1f %6d\n", "created (MiB)", 0.0, 0.0, 0.0, 0.0, 0);
    ml_checkpoint("created");

    report("cached", C + 256 * 1024, C, 256 * 1024, C + 256 * 1024, 0);
    ml_checkpoint("cached");
    report("anon", L - MiB, L - MiB - A, A, L, 0);
    printf("  %-22s  (the cache made room: the kernel reclaimed it for the anonymous memory)\n", "");
    ml_checkpoint("anon");
    ml_report_str("child_fate", "killed by SIGKILL");
    report("after", 0, 0, 0, L, 1);
    ml_checkpoint("after_oom");
    printf("\nThe child in the group was killed by SIGKILL. This process, outside the group, kept its\n"
           "%zu MiB untouched (checked).\n", outside_len / MiB);
    ml_checkpoint("done");
    return 0;
}
