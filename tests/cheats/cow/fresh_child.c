/* CHEAT (cow/fresh_child): half honest. Fills the buffer, forks, and the child
 * really reads every shared page; but instead of writing into the shared
 * buffer (which would trigger copy-on-write), the child maps a fresh buffer
 * of its own and writes `count` pages there. The fault count is genuine (one
 * per page written), and every figure is honestly measured, but no page of
 * the shared buffer is ever copied. It earns the fill, the sharing and the
 * free reads; every copy-on-write check must fail. */
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
    long pages = (long)(len / page);
    size_t count = (size_t)(fraction * (double)pages);
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);

    struct ml_snapshot start, filled;
    ml_snapshot_now(&start);
    ml_checkpoint("start");
    char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        ml_die("mmap");
    ml_report_addr("buf", buf);
    ml_report_long("buf_len", (long long)len);
    ml_report_long("write_pages", (long long)count);
    memset(buf, fill, len);
    ml_snapshot_now(&filled);
    ml_checkpoint("parent_touched");
    ml_report_long("parent_touch_minflt", filled.ru.minflt - start.ru.minflt);
    fflush(stdout);

    pid_t pid = fork();
    if (pid < 0)
        ml_die("fork");
    if (pid == 0) {
        struct ml_snapshot s0, s1, s2;
        ml_snapshot_now(&s0);
        ml_checkpoint("child_start");
        unsigned long sum = 0;
        for (size_t off = 0; off < len; off += page)
            sum += (unsigned char)((volatile char *)buf)[off];
        ml_snapshot_now(&s1);
        ml_checkpoint("child_read");
        char *mine = mmap(NULL, count * page + page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mine == MAP_FAILED)
            ml_die_child("mmap");
        for (size_t i = 0; i < count; i++)
            mine[i * page] = (char)(fill ^ 0xff);
        ml_snapshot_now(&s2);
        ml_checkpoint("child_written");
        ml_report_long("child_read_minflt", s1.ru.minflt - s0.ru.minflt);
        ml_report_long("child_write_minflt", s2.ru.minflt - s1.ru.minflt);
        ml_report_long("child_pss_before_kb", s1.ro.pss_kb);
        ml_report_long("child_pss_after_kb", s2.ro.pss_kb);
        ml_report_long("child_rss_before_kb", s1.ro.rss_kb);
        ml_report_long("child_rss_after_kb", s2.ro.rss_kb);
        _exit(sum == 0 ? 3 : 0);
    }
    int status;
    waitpid(pid, &status, 0);
    long changed = 0;
    for (size_t off = 0; off < len; off += page)
        for (size_t i = 0; i < page; i++)
            if (buf[off + i] != (char)fill) {
                changed++;
                break;
            }
    ml_report_long("parent_changed_pages", changed);
    ml_checkpoint("parent_after");
    printf("cow: %ld pages, %zu written by the child, %ld changed in the parent.\n",
           pages, count, changed);
    munmap(buf, len);
    return 0;
}
