/* CHEAT (numa/default_policy): claims pages on node N that are on node 0.
 * It reads the real topology (libnuma: the node count and numa_distance()),
 * then pins itself to node 0 and allocates every region with plain mmap()
 * and the default policy, touching every page there: everything lands on
 * node 0. No numa_alloc_onnode(), no interleave, no preferred policy, no
 * move_pages() at all (neither to count nor to move). It reports the counts
 * each policy should have given, as if it had worked: every page on --node
 * for local, bind and preferred, an even share on every node for interleave,
 * every page on --to after the "migration", none failed.
 * Here (one node, so --node 0 --to 0) it must lose bind (the region's policy
 * in numa_maps is default, not bind) and local_first_touch (its count was
 * never measured; on one node it is right by construction, which is why
 * that check must see a move_pages() query to credit it). In the two-node
 * guest, with the grader's seeds 1 and 2 (--node 1 --to 0), it reports 2048
 * or 6144 pages on node 1 where numa_maps shows (all but a stray page) none:
 * local, bind and preferred fail (nothing on node 1; bind's policy is
 * default), interleave fails (everything on node 0, policy default), migrate
 * fails (the region it names as migrated was never bound to node 1; its
 * adjacent default mappings even merge into one VMA, all on node 0). It
 * earns only topology, which it really reads. */
#include "memlab.h"

#include <getopt.h>
#include <numa.h>
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
}

static void all_on(long *counts, int nodes, int node, long pages)
{
    for (int n = 0; n < nodes; n++)
        counts[n] = n == node ? pages : 0;
}

/* Default policy, first touch by a CPU of node 0: every page on node 0. */
static char *on_node0(size_t len, size_t page)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        ml_die("mmap");
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
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
    if (numa_available() < 0) {
        ml_report_str("numa_error", "no NUMA support");
        ml_checkpoint("done");
        return 0;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    long pages = (long)(len / page);
    int nodes = numa_max_node() + 1;
    if (nodes > MAX_NODES)
        nodes = MAX_NODES;
    if (node >= nodes)
        ml_usage_error("--node %ld: this machine has nodes 0..%d", node, nodes - 1);
    if (to < 0)
        to = (node + 1) % nodes;

    ml_report_long("nodes", nodes);
    for (int a = 0; a < nodes; a++)
        for (int b = 0; b < nodes; b++) {
            char name[32];
            snprintf(name, sizeof name, "distance.%d.%d", a, b);
            ml_report_long(name, numa_distance(a, b));
        }
    ml_checkpoint("topology");

    if (numa_run_on_node(0) < 0)
        ml_warn("numa_run_on_node(0)");
    long counts[MAX_NODES];
    char *local = on_node0(len, page);
    all_on(counts, nodes, (int)node, pages);
    report_counts("local", local, counts, nodes);

    char *bound = on_node0(len, page);           /* instead of numa_alloc_onnode() */
    report_counts("bound", bound, counts, nodes);

    char *spread = on_node0(len, page);          /* instead of numa_alloc_interleaved() */
    for (int n = 0; n < nodes; n++)
        counts[n] = pages / nodes + (n < pages % nodes);
    report_counts("interleaved", spread, counts, nodes);

    char *pref = on_node0(len, page);            /* no numa_set_preferred() */
    all_on(counts, nodes, (int)node, pages);
    report_counts("preferred", pref, counts, nodes);

    ml_report_long("migrate_failed", 0);         /* no move_pages() */
    ml_report_long("migrate_to", to);
    all_on(counts, nodes, (int)to, pages);
    report_counts("migrated", bound, counts, nodes);

    munmap(local, len);
    munmap(bound, len);
    munmap(spread, len);
    munmap(pref, len);
    ml_checkpoint("done");
    return 0;
}
