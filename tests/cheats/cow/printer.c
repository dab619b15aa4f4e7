/* CHEAT (cow/printer): the liar (expected figures computed from the options,
 * reported, all six checkpoints, no buffer, no fork) that also forks a child
 * which does nothing but send the child's checkpoints, and prints the
 * reference lab's human story with plausible, made-up numbers. The child
 * exists, so the checkpoints really come from a child, but no buffer is ever
 * filled, shared, read or written. Must score 0 on everything but the pure
 * "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void row(const char *who, const char *step, long faults, double rss, double pss, const char *note)
{
    printf("  %-6s %-14s %8ld %9.1f %9.1f   %s\n", who, step, faults, rss, pss, note);
}

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
    double mib = (double)len / MiB;

    printf("cow: %zu MiB buffer (%ld pages), the child writes %ld of them (%.0f%%)\n\n",
           len / MiB, pages, count, fraction * 100);
    printf("  %-6s %-14s %8s %9s %9s\n", "who", "step", "faults", "Rss MiB", "Pss MiB");
    ml_checkpoint("start");
    ml_report_addr("buf", (void *)0x7f3a5c000000UL);
    ml_report_long("buf_len", (long long)len);
    ml_report_long("write_pages", count);
    ml_checkpoint("parent_touched");
    ml_report_long("parent_touch_minflt", pages);
    row("parent", "filled", pages + 3, mib + 1.2, mib + 1.0, "one fault per page");
    fflush(stdout);

    pid_t pid = fork();
    if (pid < 0)
        ml_die("fork");
    if (pid == 0) {
        ml_checkpoint("child_start");
        ml_checkpoint("child_read");
        ml_checkpoint("child_written");
        ml_report_long("child_read_minflt", 0);
        ml_report_long("child_write_minflt", count);
        ml_report_long("child_pss_before_kb", kb / 2);
        ml_report_long("child_pss_after_kb", kb / 2 + count * page_kb / 2);
        ml_report_long("child_rss_before_kb", kb);
        ml_report_long("child_rss_after_kb", kb);
        row("child", "after fork", 4, mib + 1.2, mib / 2 + 0.6,
            "faults since fork; every page shared: Pss is half the buffer");
        row("child", "read all", 0, mib + 1.2, mib / 2 + 0.6, "reading shared pages is free");
        row("child", "wrote", count, mib + 1.2, (mib + (double)count * page_kb / 1024.0) / 2 + 0.6,
            "pages written: each one copied");
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    ml_report_long("parent_changed_pages", 0);
    ml_checkpoint("parent_after");
    printf("\nThe parent's buffer after the child's writes: 0 of %ld pages changed: "
           "copy-on-write kept it intact.\n", pages);
    return 0;
}
