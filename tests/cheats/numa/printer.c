/* CHEAT (numa/printer): the liar (a topology made up from the options, the
 * counts each policy should give: every page on --node for local, bind and
 * preferred, an even share for interleave, every page on --to after the
 * migration), plus the reference lab's human story printed with those
 * numbers, and real addresses: each region is a real mmap() of the right
 * size, but with the default policy and never touched, so no page of it
 * exists anywhere. No policy, no move_pages(). Must score 0 on everything but
 * the pure "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_NODES 64

static void report_counts(const char *step, char *region, const long *counts, int nodes)
{
    char name[64];
    snprintf(name, sizeof name, "%s.addr", step);
    ml_report_addr(name, region);
    for (int n = 0; n < nodes; n++) {
        snprintf(name, sizeof name, "%s.n%d", step, n);
        ml_report_long(name, counts[n]);
    }
    snprintf(name, sizeof name, "%s.unknown", step);
    ml_report_long(name, 0);
    ml_checkpoint(step);
    printf("  %-12s", step);
    for (int n = 0; n < nodes; n++)
        printf(" %8ld", counts[n]);
    printf("\n");
}

static void all_on(long *counts, int nodes, int node, long pages)
{
    for (int n = 0; n < nodes; n++)
        counts[n] = n == node ? pages : 0;
}

static char *untouched(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        ml_die("mmap");
    return p;
}

int main(int argc, char **argv)
{
    ml_init("numa", argc, argv);
    size_t len = 16 * MiB;
    long node = 0, to = -1;
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'},
        {"node", required_argument, NULL, 'n'},
        {"to", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "s:n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': len = ml_parse_size(optarg, "--size"); break;
        case 'n': node = ml_parse_long(optarg, "--node", 0, MAX_NODES - 1); break;
        case 't': to = ml_parse_long(optarg, "--to", 0, MAX_NODES - 1); break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    long pages = (long)(len / page);
    int nodes = (int)(node > to ? node : to) + 1;
    if (to < 0)
        to = (node + 1) % nodes;

    printf("numa: %d node%s; %zu MiB (%ld pages) per region\n\n", nodes, nodes > 1 ? "s" : "",
           len / MiB, pages);
    ml_report_long("nodes", nodes);
    printf("  node  size MiB  free MiB  cpus   distances\n");
    for (int a = 0; a < nodes; a++) {
        printf("  %4d  %8d  %8d  %4d  ", a, 16384, 15000, 2);
        for (int b = 0; b < nodes; b++) {
            char name[32];
            snprintf(name, sizeof name, "distance.%d.%d", a, b);
            ml_report_long(name, a == b ? 10 : 20);
            printf(" %3d", a == b ? 10 : 20);
        }
        printf("\n");
    }
    ml_checkpoint("topology");

    printf("\n  %-12s", "pages on");
    for (int n = 0; n < nodes; n++)
        printf("   node %d", n);
    printf("\n");
    long counts[MAX_NODES];
    char *bound = untouched(len);
    all_on(counts, nodes, (int)node, pages);
    report_counts("local", untouched(len), counts, nodes);
    report_counts("bound", bound, counts, nodes);
    for (int n = 0; n < nodes; n++)
        counts[n] = pages / nodes + (n < pages % nodes);
    report_counts("interleaved", untouched(len), counts, nodes);
    all_on(counts, nodes, (int)node, pages);
    report_counts("preferred", untouched(len), counts, nodes);
    ml_report_long("migrate_failed", 0);
    ml_report_long("migrate_to", to);
    all_on(counts, nodes, (int)to, pages);
    report_counts("migrated", bound, counts, nodes);
    printf("\n  bound to node %ld, then moved to node %ld%s\n", node, to,
           nodes == 1 ? " (one node: nowhere else to go)" : "");
    ml_checkpoint("done");
    return 0;
}
