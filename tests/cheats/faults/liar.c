/* CHEAT (faults/liar): parses the options like the real lab, computes the
 * "expected" figures from them (pages = size / page size, 0 faults for mmap(),
 * one fault per page for touching, the zero page for read-first, 512x fewer
 * faults for THP...) and reports them, passing every checkpoint, without doing
 * any memory work at all: no mmap(), no touching, no measurement.
 * It must score 0 on everything but the pure "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
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
    ml_report_addr("region", (void *)0x7f3a5c000000UL);   /* a plausible mmap address */
    ml_report_long("region_len", (long long)len);
    ml_checkpoint("mapped");
    if (v == READ_FIRST) {
        ml_report_long("read_minflt", pages);
        ml_report_long("read_anon_kb", 0);
        ml_checkpoint("read");
    }
    ml_checkpoint("touched");
    ml_report_long("mmap_minflt", v == POPULATE ? pages : 0);
    ml_report_long("mmap_anon_kb", v == POPULATE ? kb : 0);
    ml_report_long("touch_minflt", v == POPULATE ? 0 : v == THP ? hpages : pages);
    ml_report_long("touch_majflt", 0);
    ml_report_long("touch_anon_kb", v == POPULATE ? 0 : kb);
    ml_report_long("huge_kb", v == THP ? kb : 0);
    ml_checkpoint("done");
    return 0;
}
