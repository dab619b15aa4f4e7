/* CHEAT (faults/printer): the liar (expected figures computed from the
 * options, reported, every checkpoint passed, no memory work) that also prints
 * the reference lab's human story with plausible, made-up numbers, so that the
 * output looks exactly like a real run. Must score 0 on everything but the
 * pure "it ran" check: the grader reads the process, not its stdout.
 * Unlike faults/liar.c it assumes a kernel without a shared zero page (reads
 * allocate, the writes after them cost nothing), so that between the two of
 * them both kinds of kernel get a liar whose figures look right. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum variant { PLAIN, POPULATE, READ_FIRST, THP };
static const char *const variant_names[] = {"plain", "populate", "read-first", "thp"};

static void row(const char *step, long dmin, double anon_mib, double huge_mib, const char *note)
{
    printf("  %-14s %9ld %8ld %10.1f %10.1f   %s\n", step, dmin, 0L, anon_mib, huge_mib, note);
}

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    size_t len = 256 * MiB;
    enum variant v = PLAIN;
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'},
        {"variant", required_argument, NULL, 'v'},
        {"misalign", no_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "s:v:mh", opts, NULL)) != -1) {
        switch (c) {
        case 's': len = ml_parse_size(optarg, "--size"); break;
        case 'v':
            for (v = 0; v <= THP && strcmp(optarg, variant_names[v]) != 0; v++)
                ;
            if (v > THP)
                ml_usage_error("--variant '%s'", optarg);
            break;
        case 'm': break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    long pages = (long)(len / page), kb = (long)(len / KiB);
    long hpages = (long)(len / (2 * MiB));
    double mib = (double)len / MiB, base = 1.3;

    printf("faults: %s variant, %zu MiB = %ld pages of %zu KiB\n\n", variant_names[v],
           len / MiB, pages, page / KiB);
    printf("  %-14s %9s %8s %10s %10s\n", "step", "minflt", "majflt", "anon MiB", "huge MiB");
    ml_checkpoint("start");
    row("start", 0, base, 0, "before mmap()");
    ml_report_addr("region", (void *)0x7f3a5c000000UL);
    ml_report_long("region_len", (long long)len);
    ml_checkpoint("mapped");
    row("mapped", v == POPULATE ? pages + 3 : 1, v == POPULATE ? base + mib : base, 0,
        v == POPULATE ? "MAP_POPULATE filled every page inside mmap()"
                      : "addresses reserved, nothing allocated");
    if (v == READ_FIRST) {
        ml_report_long("read_minflt", pages);
        ml_report_long("read_anon_kb", kb);
        ml_checkpoint("read");
        row("read", pages + 2, base + mib, 0, "reads allocated pages: this kernel maps no zero page");
    }
    ml_checkpoint("touched");
    long touch = v == POPULATE || v == READ_FIRST ? 0 : v == THP ? hpages : pages;
    row("touched", touch + 2, base + mib, v == THP ? mib : 0,
        v == POPULATE ? "already present: (almost) no faults"
        : v == READ_FIRST ? "already private pages: no fault"
        : v == THP ? "one fault per 2 MiB huge page" : "one minor fault per page");
    ml_report_long("mmap_minflt", v == POPULATE ? pages : 0);
    ml_report_long("mmap_anon_kb", v == POPULATE ? kb : 0);
    ml_report_long("touch_minflt", touch);
    ml_report_long("touch_majflt", 0);
    ml_report_long("touch_anon_kb", v == POPULATE || v == READ_FIRST ? 0 : kb);
    ml_report_long("huge_kb", v == THP ? kb : 0);
    printf("\n%ld pages touched for %ld minor faults (%.3f per page)", pages, touch + 2,
           (double)(touch + 2) / (double)pages);
    if (v == THP)
        printf("; %ld MiB are backed by 2 MiB pages", kb / 1024);
    printf(".\n");
    ml_checkpoint("done");
    return 0;
}
