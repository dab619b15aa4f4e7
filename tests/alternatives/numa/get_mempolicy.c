/* ALT numa "get_mempolicy": where_are() asks get_mempolicy(MPOL_F_NODE|MPOL_F_ADDR) for each page's node instead
 * of move_pages() (a blind tester's solution): the kernel's answer either way. */
/* numa.c - NUMA: which node's memory holds a page, and how to choose it.
 *
 * On a machine with several NUMA nodes each node has memory of its own, close
 * to its CPUs; memory of another node costs more to reach (the distance table
 * says how much more). The kernel places a page when it is first touched,
 * following the policy of the mapping or the thread: local (the node of the CPU
 * that touches it, the default), bind (only these nodes), interleave (round
 * robin, page by page), preferred (this node if it can). move_pages() tells
 * where pages are, and moves them.
 *
 * Usage: numa [--size SIZE] [--node N] [--to M]
 * Try:   numa                         16 MiB under each policy, on node 0
 *        numa --node 1 --to 0         bind to node 1, then migrate to node 0
 *        MEMLAB_PAUSE=1 numa          stop at each step; compare
 *                                     /proc/<pid>/numa_maps (N0=, N1= counts)
 *        numactl --hardware           the topology, as numactl sees it
 * Needs: Linux with NUMA (CONFIG_NUMA), libnuma. On one node every page is on
 *        node 0; `make lab-numa VM=1` runs it in a two-node QEMU guest.
 */
#include "memlab.h"

#include <errno.h>
#include <getopt.h>
#include <numa.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_NODES 64

static void usage(void)
{
    printf("Usage: %s [--size SIZE] [--node N] [--to M]\n"
           "Place SIZE bytes under each NUMA policy, find out where every page went,\n"
           "and migrate a region from node N to node M.\n\n"
           "  -s, --size SIZE   bytes per region (default 16M)\n"
           "  -n, --node N      the node for bind, preferred and local (default 0)\n"
           "  -t, --to M        where to migrate the bound region (default: the next node)\n"
           "  -h, --help        this text\n",
           ml_progname);
}

/* An anonymous mapping with an inaccessible page on each side, so that the
 * kernel cannot merge it with a neighbour: /proc/<pid>/numa_maps then shows
 * exactly its pages on one line. */
static char *map_isolated(size_t len, size_t page)
{
    char *p = mmap(NULL, len + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        ml_die("mmap");
    if (mprotect(p + page, len, PROT_READ | PROT_WRITE) < 0)
        ml_die("mprotect");
    return p + page;
}

static void touch(char *p, size_t len, size_t page)
{
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
}

/* Count, per node, where the pages of [p, p+len) are: counts[node]++ for each
 * page. Returns the number of pages whose node could not be found. */
static long where_are(char *p, size_t len, size_t page, long *counts, int nodes)
{
    long unknown = 0;
    for (int n = 0; n < nodes; n++)
        counts[n] = 0;
    unsigned long count = len / page;
    void **pages = malloc(count * sizeof *pages);
    int *status = malloc(count * sizeof *status);
    if (!pages || !status)
        ml_die("malloc");
    for (unsigned long i = 0; i < count; i++)
        pages[i] = p + i * page;
    for (unsigned long i = 0; i < count; i++) {
        int nd = -1;
        if (get_mempolicy(&nd, NULL, 0, pages[i], MPOL_F_NODE | MPOL_F_ADDR) < 0)
            status[i] = -errno;
        else
            status[i] = nd;
    }
    for (unsigned long i = 0; i < count; i++) {
        if (status[i] >= 0 && status[i] < nodes)
            counts[status[i]]++;
        else
            unknown++;
    }
    free(pages); free(status);
    return unknown;
}

/* Move every page of [p, p+len) to `node`; returns how many did not move. */
static long migrate(char *p, size_t len, size_t page, int node)
{
    long failed = 0;
    unsigned long count = len / page;
    void **pages = malloc(count * sizeof *pages);
    int *targets = malloc(count * sizeof *targets);
    int *status = malloc(count * sizeof *status);
    if (!pages || !targets || !status)
        ml_die("malloc");
    for (unsigned long i = 0; i < count; i++) {
        pages[i] = p + i * page;
        targets[i] = node;
        status[i] = -1;
    }
    long r = move_pages(0, count, pages, targets, status, MPOL_MF_MOVE);
    if (r < 0)
        failed = (long)count;
    else
        for (unsigned long i = 0; i < count; i++)
            if (status[i] != node)
                failed++;
    free(pages); free(targets); free(status);
    return failed;
}

/* The distance from node a to node b, as the kernel's table gives it
 * (10 means local; larger means further away). */
static int node_distance(int a, int b)
{
    return numa_distance(a, b);
}

static void report_counts(const char *step, char *region, const long *counts, int nodes,
                          long unknown)
{
    char name[64];
    snprintf(name, sizeof name, "%s.addr", step);
    ml_report_addr(name, region);
    for (int n = 0; n < nodes; n++) {
        snprintf(name, sizeof name, "%s.n%d", step, n);
        ml_report_long(name, counts[n]);
    }
    snprintf(name, sizeof name, "%s.unknown", step);
    ml_report_long(name, unknown);
    ml_checkpoint(step);
    printf("  %-12s", step);
    for (int n = 0; n < nodes; n++)
        printf(" %8ld", counts[n]);
    if (unknown)
        printf("   (%ld pages not found)", unknown);
    printf("\n");
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
        case 'h': usage(); return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (optind < argc)
        ml_usage_error("unexpected argument '%s'", argv[optind]);
    if (numa_available() < 0) {
        ml_report_str("numa_error", "no NUMA support (numa_available() < 0)");
        printf("numa: this kernel has no NUMA support.\n");
        ml_checkpoint("done");
        return 0;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    /* 4 KiB pages only: a THP "always" kernel would interleave 2 MiB at a time */
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0)
        ml_warn("prctl(PR_SET_THP_DISABLE)");
    int nodes = numa_max_node() + 1;
    if (nodes > MAX_NODES)
        nodes = MAX_NODES;
    if (node >= nodes)
        ml_usage_error("--node %ld: this machine has nodes 0..%d", node, nodes - 1);
    if (to < 0)
        to = (node + 1) % nodes;
    if (to >= nodes)
        ml_usage_error("--to %ld: this machine has nodes 0..%d", to, nodes - 1);

    printf("numa: %d node%s; %zu MiB (%zu pages) per region\n\n", nodes, nodes > 1 ? "s" : "",
           len / MiB, len / page);
    ml_report_long("nodes", nodes);
    printf("  node  size MiB  free MiB  cpus   distances\n");
    for (int n = 0; n < nodes; n++) {
        long long free_b = 0;
        long long size_b = numa_node_size64(n, &free_b);
        struct bitmask *cpus = numa_allocate_cpumask();
        int ncpu = 0;
        if (numa_node_to_cpus(n, cpus) == 0)
            for (unsigned i = 0; i < cpus->size; i++)
                ncpu += numa_bitmask_isbitset(cpus, i);
        numa_free_cpumask(cpus);
        printf("  %4d  %8lld  %8lld  %4d  ", n, size_b / (long long)MiB, free_b / (long long)MiB, ncpu);
        for (int m = 0; m < nodes; m++) {
            int d = node_distance(n, m);
            printf(" %3d", d);
            char name[32];
            snprintf(name, sizeof name, "distance.%d.%d", n, m);
            ml_report_long(name, d);
        }
        printf("\n");
    }
    ml_checkpoint("topology");

    long counts[MAX_NODES];
    printf("\n  %-12s", "pages on");
    for (int n = 0; n < nodes; n++)
        printf("   node %d", n);
    printf("\n");

    /* local (the default policy): placed on the node of the CPU that touches it */
    if (numa_run_on_node((int)node) < 0)
        ml_warn("numa_run_on_node(%ld)", node);
    char *local = map_isolated(len, page);
    touch(local, len, page);
    report_counts("local", local, counts, nodes, where_are(local, len, page, counts, nodes));

    /* bind: only node N */
    char *bound = numa_alloc_onnode(len, (int)node);
    if (bound == NULL)
        ml_die("numa_alloc_onnode");
    touch(bound, len, page);
    report_counts("bound", bound, counts, nodes, where_are(bound, len, page, counts, nodes));

    /* interleave: round robin over every node */
    char *spread = numa_alloc_interleaved(len);
    if (spread == NULL)
        ml_die("numa_alloc_interleaved");
    touch(spread, len, page);
    report_counts("interleaved", spread, counts, nodes, where_are(spread, len, page, counts, nodes));

    /* preferred: node N if it has room, set on the mapping itself (so numa_maps
     * shows it), while the thread runs on another node's CPU: without the
     * policy, first touch would put the pages there */
    numa_run_on_node((int)to);
    char *pref = map_isolated(len, page);
    unsigned long mask[MAX_NODES / (8 * sizeof(unsigned long)) + 1] = {0};
    mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(unsigned long)));
    if (mbind(pref, len, MPOL_PREFERRED, mask, MAX_NODES + 1, 0) < 0)
        ml_die("mbind(MPOL_PREFERRED, node %ld)", node);
    touch(pref, len, page);
    numa_run_on_node(-1);
    report_counts("preferred", pref, counts, nodes, where_are(pref, len, page, counts, nodes));

    /* migrate the bound region to node M (move_pages moves pages whatever the
     * policy says; the policy only decides where new pages go) */
    long failed = migrate(bound, len, page, (int)to);
    ml_report_long("migrate_failed", failed);
    ml_report_long("migrate_to", to);
    report_counts("migrated", bound, counts, nodes, where_are(bound, len, page, counts, nodes));
    printf("\n  bound to node %ld, then moved to node %ld%s\n", node, to,
           nodes == 1 ? " (one node: nowhere else to go)" : "");

    munmap(local - page, len + 2 * page);
    munmap(pref - page, len + 2 * page);
    numa_free(bound, len);
    numa_free(spread, len);
    ml_checkpoint("done");
    return 0;
}
