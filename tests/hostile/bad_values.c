/* bad_values.c - hostile lab: does the faults lab's work correctly (mmap,
 * touch, every checkpoint; graded with a seed whose size stays under 64 MiB)
 * but reports absurd values for the figures the checks compare: a number with
 * 26 digits, NaN, inf, 1e999, -1, text, an empty value. Only `completes` may
 * pass; every other check must say "the lab reported ...". */
#include "memlab.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    size_t len = 32 * MiB;
    const char *variant = "plain";
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--size") == 0)
            len = ml_parse_size(argv[i + 1], "--size");
        else if (strcmp(argv[i], "--variant") == 0)
            variant = argv[i + 1];
    }
    if (len > 64 * MiB)
        ml_die("this test program stays under 64 MiB (got --size %zu)", len);
    bool thp = strcmp(variant, "thp") == 0, populate = strcmp(variant, "populate") == 0;
    bool read_first = strcmp(variant, "read-first") == 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), huge = 2 * MiB;
    if (!thp)
        prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);

    ml_checkpoint("start");
    char *p;
    if (thp) {
        char *raw = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED)
            ml_die("mmap");
        p = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
        madvise(p, len, MADV_HUGEPAGE);
    } else {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0), -1, 0);
        if (p == MAP_FAILED)
            ml_die("mmap");
    }
    ml_checkpoint("mapped");
    if (read_first) {
        unsigned long sum = 0;
        for (size_t off = 0; off < len; off += page)
            sum += (unsigned char)((volatile char *)p)[off];
        ml_checkpoint("read");
        ml_report_str("read_minflt", sum ? "many" : "12abc");
    }
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
    ml_checkpoint("touched");

    ml_report_str("mmap_minflt", "NaN");
    ml_report_str("touch_minflt", thp ? "-1" : populate ? "1e999" : read_first ? "nan"
                                : "99999999999999999999999999");
    ml_report_str("touch_majflt", "-1");
    ml_report_str("touch_anon_kb", "inf");
    ml_report_str("huge_kb", "");
    printf("faults: %s variant done\n", variant);
    ml_checkpoint("done");
    return 0;
}
