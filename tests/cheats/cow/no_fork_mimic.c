/* CHEAT (cow/no_fork_mimic): a careful no-fork cheat. Fills the buffer for
 * real, never forks, and makes the main process reproduce each thing the
 * grader looks at in "the child":
 *   - child_read: clears its own accessed bits (/proc/self/clear_refs) before
 *     checkpoint child_start, then reads every page: Referenced grows by the
 *     buffer, with no fault (the pages are its own, already present);
 *   - child_written: madvise(MADV_DONTNEED) on `count` pages, then writes one
 *     byte in each: `count` genuine faults, `count` changed pages in memory;
 *   - parent_after: writes the fill byte back over those pages, so the
 *     "parent" buffer is intact.
 * None of this is copy-on-write: no page is ever shared or copied. It earns
 * the parent's fill; every check about the child must fail. */
#include "memlab.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    ml_init("cow", argc, argv);
    size_t len = 64 * MiB;
    double fraction = 0.5;
    int fill = 0x5a;
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
        case 'f': fill = (int)ml_parse_long(optarg, "--fill", 1, 254); break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    long pages = (long)(len / page), kb = (long)(len / KiB), page_kb = (long)(page / KiB);
    size_t count = (size_t)(fraction * (double)pages);
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);

    struct ml_snapshot s0, s1, s2, s3;
    ml_snapshot_now(&s0);
    ml_checkpoint("start");
    char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        ml_die("mmap");
    ml_report_addr("buf", buf);
    ml_report_long("buf_len", (long long)len);
    ml_report_long("write_pages", (long long)count);
    memset(buf, fill, len);
    ml_snapshot_now(&s1);
    ml_checkpoint("parent_touched");
    ml_report_long("parent_touch_minflt", s1.ru.minflt - s0.ru.minflt);

    /* "the child": this same process */
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0 || write(fd, "1", 1) != 1)
        ml_warn("clear_refs");
    if (fd >= 0)
        close(fd);
    ml_snapshot_now(&s1);
    ml_checkpoint("child_start");
    unsigned long sum = 0;
    for (size_t off = 0; off < len; off += page)
        sum += (unsigned char)((volatile char *)buf)[off];
    ml_snapshot_now(&s2);
    ml_checkpoint("child_read");
    if (madvise(buf, count * page, MADV_DONTNEED) < 0)
        ml_die("madvise");
    for (size_t i = 0; i < count; i++)
        buf[i * page] = (char)(fill ^ 0xff);
    ml_snapshot_now(&s3);
    ml_checkpoint("child_written");
    ml_report_long("child_read_minflt", s2.ru.minflt - s1.ru.minflt);
    ml_report_long("child_write_minflt", s3.ru.minflt - s2.ru.minflt);
    ml_report_long("child_pss_before_kb", kb / 2);
    ml_report_long("child_pss_after_kb", kb / 2 + (long)count * page_kb / 2);
    ml_report_long("child_rss_before_kb", s2.ro.rss_kb);
    ml_report_long("child_rss_after_kb", s3.ro.rss_kb);

    memset(buf, fill, count * page);       /* "the parent's copy": put it back */
    ml_report_long("parent_changed_pages", 0);
    ml_checkpoint("parent_after");
    printf("cow: %ld pages, %zu written by the child, parent intact (%lu).\n", pages, count, sum);
    munmap(buf, len);
    return 0;
}
