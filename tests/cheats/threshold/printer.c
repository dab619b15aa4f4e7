/* CHEAT (threshold/printer): the liar (below), plus the reference lab's human
 * story printed with the same made-up addresses, so that the output looks
 * like a real run. The liar part: parses the options and reports the
 * textbook answer without allocating anything: every ladder size with a plausible made-up
 * address (heap-like 0x5555555592a0... below the threshold, mapping-like
 * 0x7ffff7...010 above), placed by the rule "size >= threshold -> mmap" with
 * the threshold taken from --mallopt, MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES
 * (128 KiB by default), and for the reuse experiment the textbook story
 * (mapped, heap after free() unless the threshold was set, 2N mapped), all
 * checkpoints included. No malloc(), no free(), no /proc/self/maps.
 * Must score 0 on everything but the pure "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LADDER 32

static void report(const char *prefix, size_t size, unsigned long addr, const char *where)
{
    char name[64];
    snprintf(name, sizeof name, "%s.size", prefix);
    ml_report_long(name, (long long)size);
    snprintf(name, sizeof name, "%s.addr", prefix);
    ml_report_addr(name, (void *)addr);
    if (where) {
        snprintf(name, sizeof name, "%s.where", prefix);
        ml_report_str(name, where);
    }
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
        case 'e': do_reuse = strcmp(optarg, "reuse") == 0; break;
        case 'r': reuse_size = ml_parse_size(optarg, "--reuse-size"); break;
        case 'm': threshold = ml_parse_long(optarg, "--mallopt", 0, 32L << 20); break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    bool fixed = threshold > 0, from_mallopt = fixed;
    const char *env = getenv("MALLOC_MMAP_THRESHOLD_");
    const char *tun = getenv("GLIBC_TUNABLES");
    if (!fixed && env) {
        threshold = atol(env);
        fixed = true;
    }
    if (!fixed && tun && strstr(tun, "mmap_threshold=")) {
        threshold = atol(strstr(tun, "mmap_threshold=") + strlen("mmap_threshold="));
        fixed = true;
    }
    if (!fixed)
        threshold = 128 * 1024;

    if (from_mallopt)
        printf("threshold: mallopt(M_MMAP_THRESHOLD, %ld)\n", threshold);
    if (env)
        printf("threshold: MALLOC_MMAP_THRESHOLD_=%s\n", env);
    if (tun)
        printf("threshold: GLIBC_TUNABLES=%s\n", tun);
    if (!fixed)
        printf("threshold: glibc's default (128 KiB, raised by free() of a mapped block)\n");
    printf("\n");
    ml_checkpoint("start");
    if (do_reuse) {
        unsigned long mapped = 0x7ffff7a00010UL, heap = 0x5555555592a0UL;
        report("reuse.first", reuse_size, mapped, NULL);
        ml_checkpoint("first");
        ml_checkpoint("freed");
        report("reuse.again", reuse_size, fixed ? mapped : heap, NULL);
        ml_checkpoint("again");
        report("reuse.later", 2 * reuse_size, mapped - 0x200000, NULL);
        ml_checkpoint("later");
        ml_report_str("reuse.first.where", "mmap");
        ml_report_str("reuse.again.where", fixed ? "mmap" : "heap");
        ml_report_str("reuse.later.where", "mmap");
        printf("  malloc(%zu)  = %-16p %s\n", reuse_size, (void *)mapped, "mmap");
        printf("  free, then malloc(%zu) = %-16p %s\n", reuse_size, (void *)(fixed ? mapped : heap),
               fixed ? "mmap" : "heap");
        printf("  malloc(%zu) = %-16p %s\n", 2 * reuse_size, (void *)(mapped - 0x200000), "mmap");
        if (!fixed)
            printf("\nFreeing the mapped block raised the threshold to its size, so the same\n"
                   "request now came from the heap; the larger one is still mapped.\n");
        else
            printf("\nThe threshold did not move: it was set explicitly (mallopt, environment),\n"
                   "which turns the dynamic adjustment off.\n");
    } else {
        size_t sizes[MAX_LADDER];
        int n = 0;
        for (char *tok = strtok(ladder_arg, ","); tok && n < MAX_LADDER; tok = strtok(NULL, ","))
            sizes[n++] = ml_parse_size(tok, "--ladder");
        unsigned long heap = 0x5555555592a0UL, mapped = 0x7ffff7d00010UL;
        char prefix[32];
        for (int i = 0; i < n; i++) {
            bool big = (long)sizes[i] >= threshold;
            snprintf(prefix, sizeof prefix, "ladder.%d", i);
            report(prefix, sizes[i], big ? mapped : heap, NULL);
            if (big)
                mapped -= (sizes[i] + 4096 + 4095) & ~4095UL;
            else
                heap += (sizes[i] + 16 + 15) & ~15UL;
        }
        ml_checkpoint("ladder");
        printf("  %12s  %-18s  %s\n", "malloc(size)", "address", "where");
        heap = 0x5555555592a0UL;
        mapped = 0x7ffff7d00010UL;
        for (int i = 0; i < n; i++) {
            bool big = (long)sizes[i] >= threshold;
            printf("  %12zu  %-18p  %s\n", sizes[i], (void *)(big ? mapped : heap), big ? "mmap" : "heap");
            if (big)
                mapped -= (sizes[i] + 4096 + 4095) & ~4095UL;
            else
                heap += (sizes[i] + 16 + 15) & ~15UL;
        }
        printf("\nThe heap ends at %p (brk). Blocks far from it, near the shared libraries,\n"
               "are mappings of their own: free() hands each one back with munmap().\n",
               (void *)0x55555557a000UL);
        for (int i = 0; i < n; i++) {
            char name[64];
            snprintf(name, sizeof name, "ladder.%d.where", i);
            ml_report_str(name, (long)sizes[i] >= threshold ? "mmap" : "heap");
        }
    }
    ml_checkpoint("done");
    return 0;
}
