/* ALT threshold #1 "find_strcmp": where_is() = ml_maps_find(0, ...) + strcmp("[heap]"), anonymous = empty path with perms "rw",
 * dies on a maps read error, "other"/"unmapped" otherwise; reuse: free(first), first = NULL, checkpoint; mallopt() in the
 * TODO spot of main() with its return value checked (warn on failure). */
/* threshold.c - where malloc() gets its memory: the heap, or a mapping of its own.
 *
 * glibc's malloc serves small requests from the heap, the region after the
 * program's data that brk() grows. A request at or above the mmap threshold
 * (128 KiB by default) that the heap's free "top" cannot hold gets a private
 * mmap() instead, which free() gives straight back with munmap(). The threshold
 * moves: freeing such a mapped block raises it to that block's size (so the
 * next request of that size lands on the heap), unless it was set explicitly
 * with mallopt(M_MMAP_THRESHOLD), MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES.
 *
 * Usage: threshold [--ladder SIZES] [--experiment ladder|reuse] [--reuse-size N]
 *                  [--mallopt N]
 * Try:   threshold                                  a ladder of sizes, placed
 *        threshold --ladder 100000,131072,140000    around the threshold
 *        threshold --experiment reuse               free, then ask again
 *        MALLOC_MMAP_THRESHOLD_=16384 threshold     a lower threshold
 *        GLIBC_TUNABLES=glibc.malloc.mmap_threshold=16384 threshold
 *        threshold --mallopt 16384                  the same from inside
 *        strace -e trace=brk,mmap,munmap threshold  watch the system calls
 * Needs: Linux with glibc.
 *
 * Placement depends on history: what was allocated before, and how big the
 * heap's top chunk is at that moment. This program allocates nothing but the
 * blocks it shows (stdout has a static buffer, the /proc readers use the
 * stack), so a run depends only on its options and the environment.
 */
#include "memlab.h"

#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LADDER 32

static void usage(void)
{
    printf("Usage: %s [--ladder SIZES] [--experiment ladder|reuse] [--reuse-size N] [--mallopt N]\n"
           "Allocate blocks with malloc() and show where each one landed: on the heap\n"
           "(brk) or in a mapping of its own (mmap).\n\n"
           "  -l, --ladder SIZES      comma-separated sizes for the ladder experiment\n"
           "                          (default 64,4096,100000,131072,200000,1M,8M)\n"
           "  -e, --experiment NAME   ladder  allocate every size, keep them all\n"
           "                          reuse   malloc(N), free it, malloc(N) again, then 2N\n"
           "  -r, --reuse-size N      N for the reuse experiment (default 200000)\n"
           "  -m, --mallopt N         set the threshold with mallopt(M_MMAP_THRESHOLD, N) first\n"
           "  -h, --help              this text\n",
           ml_progname);
}

/* Name the kind of memory that holds p: "heap" for the [heap] mapping, "mmap"
 * for an anonymous read-write mapping, "other" or "unmapped" otherwise. */
static const char *where_is(const void *p)
{
    struct ml_vma v;
    int r = ml_maps_find(0, (uintptr_t)p, &v);
    if (r < 0)
        ml_die("read /proc/self/maps");
    if (r == 0)
        return "unmapped";
    if (strcmp(v.path, "[heap]") == 0)
        return "heap";
    if (v.path[0] == '\0' && v.perms[0] == 'r' && v.perms[1] == 'w')
        return "mmap";
    return "other";
}

static size_t parse_ladder(char *list, size_t *sizes)
{
    size_t n = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (n == MAX_LADDER)
            ml_usage_error("--ladder: at most %d sizes", MAX_LADDER);
        sizes[n++] = ml_parse_size(tok, "--ladder");
    }
    if (n == 0)
        ml_usage_error("--ladder: no sizes");
    return n;
}

static void report_block(const char *prefix, size_t size, const void *p)
{
    char name[64];
    snprintf(name, sizeof name, "%s.size", prefix);
    ml_report_long(name, (long long)size);
    snprintf(name, sizeof name, "%s.addr", prefix);
    ml_report_addr(name, p);
}

static void report_where(const char *prefix, const char *where)
{
    char name[64];
    snprintf(name, sizeof name, "%s.where", prefix);
    ml_report_str(name, where);
}

static void ladder(const size_t *sizes, size_t n)
{
    void *blocks[MAX_LADDER];
    const char *where[MAX_LADDER];
    char prefix[32];

    /* allocate everything first: printing or reading maps in between would be
     * history of its own */
    for (size_t i = 0; i < n; i++) {
        blocks[i] = malloc(sizes[i]);
        if (blocks[i] == NULL)
            ml_die("malloc(%zu)", sizes[i]);
        snprintf(prefix, sizeof prefix, "ladder.%zu", i);
        report_block(prefix, sizes[i], blocks[i]);
    }
    ml_checkpoint("ladder");
    for (size_t i = 0; i < n; i++) {
        where[i] = where_is(blocks[i]);
        snprintf(prefix, sizeof prefix, "ladder.%zu", i);
        report_where(prefix, where[i]);
    }

    printf("  %12s  %-18s  %s\n", "malloc(size)", "address", "where");
    for (size_t i = 0; i < n; i++)
        printf("  %12zu  %-18p  %s\n", sizes[i], blocks[i], where[i]);
    void *brk_now = sbrk(0);
    printf("\nThe heap ends at %p (brk). Blocks far from it, near the shared libraries,\n"
           "are mappings of their own: free() hands each one back with munmap().\n", brk_now);
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
}

static bool explicit_threshold;   /* set by mallopt or the environment: no dynamic raise */

static void reuse(size_t size)
{
    void *first = malloc(size);
    if (first == NULL)
        ml_die("malloc(%zu)", size);
    report_block("reuse.first", size, first);
    ml_checkpoint("first");
    const char *w_first = where_is(first);
    uintptr_t first_addr = (uintptr_t)first;    /* for the table: first is freed below */

    void *again = NULL;
    free(first);
    first = NULL;
    ml_checkpoint("freed");
    again = malloc(size);
    if (again == NULL)
        ml_die("malloc(%zu)", size);
    report_block("reuse.again", size, again);
    ml_checkpoint("again");
    const char *w_again = where_is(again);

    void *later = malloc(2 * size);
    if (later == NULL)
        ml_die("malloc(%zu)", 2 * size);
    report_block("reuse.later", 2 * size, later);
    ml_checkpoint("later");
    const char *w_later = where_is(later);

    report_where("reuse.first", w_first);
    report_where("reuse.again", w_again);
    report_where("reuse.later", w_later);
    printf("  %-28s %-16s %s\n", "request", "address", "where");
    char what[64];
    snprintf(what, sizeof what, "malloc(%zu)", size);
    printf("  %-28s %#-16lx %s\n", what, (unsigned long)first_addr, w_first);
    snprintf(what, sizeof what, "free, malloc(%zu)", size);
    printf("  %-28s %-16p %s\n", what, again, w_again);
    snprintf(what, sizeof what, "malloc(%zu)", 2 * size);
    printf("  %-28s %-16p %s\n", what, later, w_later);
    bool explicit = explicit_threshold;
    if (strcmp(w_first, "mmap") == 0 && strcmp(w_again, "heap") == 0)
        printf("\nFreeing the mapped block raised the threshold to its size, so the same\n"
               "request now came from the heap; the larger one is still mapped.\n");
    else if (strcmp(w_first, "mmap") == 0 && strcmp(w_again, "mmap") == 0 && explicit)
        printf("\nThe threshold did not move: it was set explicitly (mallopt, environment),\n"
               "which turns the dynamic adjustment off.\n");
    else if (strcmp(w_first, "mmap") == 0 && strcmp(w_again, "mmap") == 0)
        printf("\nThe threshold did not move: glibc raises it only up to 32 MiB (on 64-bit),\n"
               "and this block is bigger.\n");
    else if (strcmp(w_first, "heap") == 0)
        printf("\nThe first block already came from the heap: it was below the threshold,\n"
               "so there was no mapped block to free and nothing to raise.\n");
    free(again);
    free(later);
}

int main(int argc, char **argv)
{
    ml_init("threshold", argc, argv);
    char default_ladder[] = "64,4096,100000,131072,200000,1M,8M";
    char *ladder_arg = default_ladder;
    bool do_reuse = false;
    size_t reuse_size = 200000;
    long threshold = 0;

    static const struct option opts[] = {
        {"ladder", required_argument, NULL, 'l'},
        {"experiment", required_argument, NULL, 'e'},
        {"reuse-size", required_argument, NULL, 'r'},
        {"mallopt", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "l:e:r:m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': ladder_arg = optarg; break;
        case 'e':
            if (strcmp(optarg, "reuse") == 0)
                do_reuse = true;
            else if (strcmp(optarg, "ladder") != 0)
                ml_usage_error("--experiment '%s': expected ladder or reuse", optarg);
            break;
        case 'r': reuse_size = ml_parse_size(optarg, "--reuse-size"); break;
        case 'm': threshold = ml_parse_long(optarg, "--mallopt", 0, 32L << 20); break;
        case 'h': usage(); return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (optind < argc)
        ml_usage_error("unexpected argument '%s'", argv[optind]);
    size_t sizes[MAX_LADDER];
    size_t n = do_reuse ? 0 : parse_ladder(ladder_arg, sizes);

    if (threshold > 0) {
        if (mallopt(M_MMAP_THRESHOLD, (int)threshold) != 1)
            ml_warn("mallopt(M_MMAP_THRESHOLD, %ld) failed", threshold);
        printf("threshold: mallopt(M_MMAP_THRESHOLD, %ld)\n", threshold);
    }
    const char *env = getenv("MALLOC_MMAP_THRESHOLD_");
    const char *tun = getenv("GLIBC_TUNABLES");
    if (env)
        printf("threshold: MALLOC_MMAP_THRESHOLD_=%s\n", env);
    if (tun)
        printf("threshold: GLIBC_TUNABLES=%s\n", tun);
    explicit_threshold = env || (tun && strstr(tun, "mmap_threshold")) || threshold > 0;
    if (!env && !tun && threshold <= 0)
        printf("threshold: glibc's default (128 KiB, raised by free() of a mapped block)\n");
    printf("\n");

    ml_checkpoint("start");
    if (do_reuse)
        reuse(reuse_size);
    else
        ladder(sizes, n);
    ml_checkpoint("done");
    return 0;
}
