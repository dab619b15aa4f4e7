/* CHEAT (faults/populate_all): half honest. Maps the region with MAP_POPULATE
 * in every variant (so the memory is really there and the pages really get
 * written), then writes every page, but reports the textbook figures of the
 * variant it was asked for (mmap() free and one fault per page for plain,
 * zero-page reads for read-first, huge pages for thp) instead of what it
 * measured. Only the populate run is the genuine experiment: it earns the
 * populate checks and nothing else. */
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

    ml_checkpoint("start");
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED)
        ml_die("mmap");
    ml_report_addr("region", p);
    ml_report_long("region_len", (long long)len);
    ml_checkpoint("mapped");
    unsigned long sum = 0;
    if (v == READ_FIRST) {
        for (size_t off = 0; off < len; off += page)
            sum += (unsigned char)((volatile char *)p)[off];
        ml_report_long("read_minflt", pages);
        ml_report_long("read_anon_kb", 0);
        ml_checkpoint("read");
    }
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
    ml_checkpoint("touched");
    ml_report_long("mmap_minflt", v == POPULATE ? pages : 0);
    ml_report_long("mmap_anon_kb", v == POPULATE ? kb : 0);
    ml_report_long("touch_minflt", v == POPULATE ? 0 : v == THP ? hpages : pages);
    ml_report_long("touch_majflt", 0);
    ml_report_long("touch_anon_kb", v == POPULATE ? 0 : kb);
    ml_report_long("huge_kb", v == THP ? kb : 0);
    printf("faults: %s variant, %zu MiB (%lu)\n", variant_names[v], len / MiB, sum);
    munmap(p, len);
    ml_checkpoint("done");
    return 0;
}
