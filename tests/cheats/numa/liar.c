/* CHEAT (numa/liar): parses the options like the real lab and reports the
 * textbook answer without placing anything: a topology made up from its
 * options (nodes = the largest of --node and --to, plus one; distance 10 to
 * itself, 20 to any other node: the kernel's default without a SLIT), then
 * for every region a made-up address and the counts the policy should give:
 * every page on --node for local, bind and preferred, an even share on every
 * node for interleave, every page on --to after the migration, none failed.
 * Every checkpoint is sent. No mmap(), no policy, no move_pages(). Must score
 * 0 on everything but the pure "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#define MAX_NODES 64

static void report_counts(const char *step, unsigned long addr, const long *counts, int nodes)
{
    char name[64];
    snprintf(name, sizeof name, "%s.addr", step);
    ml_report_addr(name, (void *)addr);
    for (int n = 0; n < nodes; n++) {
        snprintf(name, sizeof name, "%s.n%d", step, n);
        ml_report_long(name, counts[n]);
    }
    snprintf(name, sizeof name, "%s.unknown", step);
    ml_report_long(name, 0);
    ml_checkpoint(step);
}

static void all_on(long *counts, int nodes, int node, long pages)
{
    for (int n = 0; n < nodes; n++)
        counts[n] = n == node ? pages : 0;
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

    ml_report_long("nodes", nodes);
    for (int a = 0; a < nodes; a++)
        for (int b = 0; b < nodes; b++) {
            char name[32];
            snprintf(name, sizeof name, "distance.%d.%d", a, b);
            ml_report_long(name, a == b ? 10 : 20);
        }
    ml_checkpoint("topology");

    long counts[MAX_NODES];
    unsigned long base = 0x7f3a5c000000UL;
    all_on(counts, nodes, (int)node, pages);
    report_counts("local", base, counts, nodes);
    report_counts("bound", base + 1 * (len + page), counts, nodes);
    for (int n = 0; n < nodes; n++)
        counts[n] = pages / nodes + (n < pages % nodes);
    report_counts("interleaved", base + 2 * (len + page), counts, nodes);
    all_on(counts, nodes, (int)node, pages);
    report_counts("preferred", base + 3 * (len + page), counts, nodes);
    ml_report_long("migrate_failed", 0);
    ml_report_long("migrate_to", to);
    all_on(counts, nodes, (int)to, pages);
    report_counts("migrated", base + 1 * (len + page), counts, nodes);
    ml_checkpoint("done");
    return 0;
}
