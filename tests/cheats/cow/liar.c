/* CHEAT (cow/liar): parses the options like the real lab, computes the
 * "expected" figures (pages = size / page size, count = fraction x pages, one
 * fault per page to fill, none to read, one per written page, Pss + half a
 * page per copy, the parent intact) and reports them, sending all six
 * checkpoints from the one process: no buffer, no fill, no fork, no reads or
 * writes. Must score 0 on everything but the pure "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("cow", argc, argv);
    size_t len = 64 * MiB;
    double fraction = 0.5;
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'},
        {"write-fraction", required_argument, NULL, 'w'},
        {"fill", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "s:w:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': len = ml_parse_size(optarg, "--size"); break;
        case 'w': fraction = ml_parse_fraction(optarg, "--write-fraction"); break;
        case 'f': (void)ml_parse_long(optarg, "--fill", 1, 254); break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    long pages = (long)(len / page), kb = (long)(len / KiB), page_kb = (long)(page / KiB);
    long count = (long)(fraction * (double)pages);

    ml_checkpoint("start");
    ml_report_addr("buf", (void *)0x7f3a5c000000UL);     /* a plausible mmap address */
    ml_report_long("buf_len", (long long)len);
    ml_report_long("write_pages", count);
    ml_checkpoint("parent_touched");
    ml_report_long("parent_touch_minflt", pages);
    /* the "child" part, from the same process */
    ml_checkpoint("child_start");
    ml_checkpoint("child_read");
    ml_checkpoint("child_written");
    ml_report_long("child_read_minflt", 0);
    ml_report_long("child_write_minflt", count);
    ml_report_long("child_pss_before_kb", kb / 2);
    ml_report_long("child_pss_after_kb", kb / 2 + count * page_kb / 2);
    ml_report_long("child_rss_before_kb", kb);
    ml_report_long("child_rss_after_kb", kb);
    ml_report_long("parent_changed_pages", 0);
    ml_checkpoint("parent_after");
    return 0;
}
