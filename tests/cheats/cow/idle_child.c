/* CHEAT (cow/idle_child): half honest. Maps and really fills the buffer, and
 * really forks, so the child genuinely shares every page; but the child never
 * reads or writes the buffer: it only sends its three checkpoints and reports
 * the textbook figures (no fault to read, one per written page, Pss + half a
 * page per copy), and the parent reports itself intact. It earns the fill and
 * the sharing after fork, nothing about reading or copy-on-write. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
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
    long count = (long)(fraction * (double)pages);
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);

    struct ml_snapshot start, filled;
    ml_snapshot_now(&start);
    ml_checkpoint("start");
    char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        ml_die("mmap");
    ml_report_addr("buf", buf);
    ml_report_long("buf_len", (long long)len);
    ml_report_long("write_pages", count);
    memset(buf, fill, len);
    ml_snapshot_now(&filled);
    ml_checkpoint("parent_touched");
    ml_report_long("parent_touch_minflt", filled.ru.minflt - start.ru.minflt);
    fflush(stdout);

    pid_t pid = fork();
    if (pid < 0)
        ml_die("fork");
    if (pid == 0) {
        ml_checkpoint("child_start");
        ml_checkpoint("child_read");                       /* read nothing */
        ml_checkpoint("child_written");                    /* wrote nothing */
        ml_report_long("child_read_minflt", 0);
        ml_report_long("child_write_minflt", count);
        ml_report_long("child_pss_before_kb", kb / 2);
        ml_report_long("child_pss_after_kb", kb / 2 + count * page_kb / 2);
        ml_report_long("child_rss_before_kb", kb);
        ml_report_long("child_rss_after_kb", kb);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    ml_report_long("parent_changed_pages", 0);
    ml_checkpoint("parent_after");
    printf("cow: %ld pages, %ld written by the child, parent intact.\n", pages, count);
    munmap(buf, len);
    return 0;
}
