/* CHEAT (faults/no_touch): half honest. Really maps the region (a plain
 * anonymous mmap(), whatever the variant) and honestly measures and reports
 * what mmap() cost, but never reads or writes a single page: the figures for
 * reading and touching are the "expected" ones computed from the size
 * (one fault per page, RSS grows by the size, 2 MiB pages for thp...).
 * It earns the one check it really does (mmap_is_free: the mapping exists and
 * cost nothing); everything about touching must fail. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum variant { PLAIN, POPULATE, READ_FIRST, THP };
static const char *const variant_names[] = {"plain", "populate", "read-first", "thp"};

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

    struct ml_snapshot start, mapped;
    ml_snapshot_now(&start);
    ml_checkpoint("start");
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        ml_die("mmap");
    ml_report_addr("region", p);
    ml_report_long("region_len", (long long)len);
    ml_snapshot_now(&mapped);
    ml_checkpoint("mapped");
    if (v == READ_FIRST) {
        ml_report_long("read_minflt", pages);            /* never read */
        ml_report_long("read_anon_kb", 0);
        ml_checkpoint("read");
    }
    ml_checkpoint("touched");                            /* never touched */
    ml_report_long("mmap_minflt", mapped.ru.minflt - start.ru.minflt);      /* honest */
    ml_report_long("mmap_anon_kb", mapped.st.rss_anon_kb - start.st.rss_anon_kb);
    ml_report_long("touch_minflt", v == POPULATE ? 0 : v == THP ? hpages : pages);
    ml_report_long("touch_majflt", 0);
    ml_report_long("touch_anon_kb", v == POPULATE ? 0 : kb);
    ml_report_long("huge_kb", v == THP ? kb : 0);
    printf("faults: %s variant, %zu MiB: %ld pages touched, one fault each.\n",
           variant_names[v], len / MiB, pages);
    munmap(p, len);
    ml_checkpoint("done");
    return 0;
}
