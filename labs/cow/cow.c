/* cow.c - copy-on-write: what fork() copies, and what it only pretends to.
 *
 * fork() does not copy the parent's memory. It copies the page tables and
 * marks the private writable pages read-only in both processes, which now share
 * every page frame. Reading a shared page costs nothing; the first write to one
 * faults, and only then does the kernel copy that single page for the writer.
 *
 * Usage: cow [--size SIZE] [--write-fraction F] [--fill BYTE]
 * Try:   cow                                  64 MiB, the child writes half
 *        cow --size 64M --write-fraction 0.25 a quarter of the pages are copied
 *        cow --write-fraction 0               reading alone copies nothing
 *        MEMLAB_PAUSE=1 cow                   stop at each step: compare
 *                                             /proc/<pid>/smaps_rollup of both
 * Needs: Linux.
 *
 * What you should see: the parent pays one minor fault per page to fill the
 * buffer. In the child, reading every page costs no fault at all (fork copied
 * the page-table entries); writing k pages costs k faults. The child's Rss does
 * not change when it writes (a copy replaces a shared page), but its Pss grows:
 * a shared page counts half, a private one in full. The parent's data stays as
 * it was.
 */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct step {                   /* the counters of one process at one moment */
    bool measured;
    struct ml_snapshot snap;
};

static void usage(void)
{
    printf("Usage: %s [--size SIZE] [--write-fraction F] [--fill BYTE]\n"
           "Fill SIZE bytes (default 64M), fork, let the child read every page and then\n"
           "write a fraction F of them (default 0.5); show what each step cost.\n\n"
           "  -s, --size SIZE            4096, 64K, 64M, 1G (default 64M)\n"
           "  -w, --write-fraction F     0 to 1: the share of pages the child writes\n"
           "  -f, --fill BYTE            the parent's fill byte, 1..254 (default 0x5a)\n"
           "  -h, --help                 this text\n\n"
           "Set MEMLAB_PAUSE=1 to stop at each step and inspect /proc/<pid>/ yourself.\n",
           ml_progname);
}

/* Let the grader (if any) look at this process, then record its counters.
 * In this order the checkpoint's own first use after fork (its stack pages are
 * copy-on-write too) falls before the measurement, not inside the next step. */
static void take(struct step *s, const char *checkpoint)
{
    ml_checkpoint(checkpoint);
    s->measured = false;
    /* BEGIN SOLUTION */
    ml_snapshot_now(&s->snap);
    s->measured = true;
    /* STUB
    // TODO: record this process's counters in s->snap (see ml_snapshot_now
    // in common/memlab.h) and set s->measured.
    END SOLUTION */
}

/* Parent: give every page of buf its first write, with the fill byte. */
static void fill_buffer(char *buf, size_t len, int fill)
{
    /* BEGIN SOLUTION */
    memset(buf, fill, len);
    /* STUB
    // TODO: write the fill byte over the whole buffer
    (void)buf; (void)len; (void)fill;
    END SOLUTION */
}

/* Child: load one byte from every page; return their sum. */
static unsigned long read_every_page(const char *buf, size_t len, size_t page)
{
    unsigned long sum = 0;
    /* BEGIN SOLUTION */
    for (size_t off = 0; off < len; off += page)
        sum += (unsigned char)((const volatile char *)buf)[off];
    /* STUB
    // TODO: read one byte of every page (through a volatile pointer)
    (void)buf; (void)len; (void)page;
    END SOLUTION */
    return sum;
}

/* Child: change `count` pages of buf (any `count` pages) by writing `byte`. */
static void write_pages(char *buf, size_t page, size_t count, int byte)
{
    /* BEGIN SOLUTION */
    for (size_t i = 0; i < count; i++)
        buf[i * page] = (char)byte;
    /* STUB
    // TODO: write `byte` into `count` different pages
    (void)buf; (void)page; (void)count; (void)byte;
    END SOLUTION */
}

/* Parent, after the child is gone: how many pages no longer hold only `fill`? */
static long count_changed_pages(const char *buf, size_t len, size_t page, int fill)
{
    long changed = 0;
    /* BEGIN SOLUTION */
    for (size_t off = 0; off < len; off += page) {
        const char *p = buf + off;
        /* all bytes equal the first one, and the first one is the fill */
        if (p[0] != (char)fill || memcmp(p, p + 1, page - 1) != 0)
            changed++;
    }
    /* STUB
    // TODO: compare every byte with the fill byte; count the pages that differ
    changed = -1;
    (void)buf; (void)len; (void)page; (void)fill;
    END SOLUTION */
    return changed;
}

static void report_delta(const char *name, const struct step *a, const struct step *b, long va, long vb)
{
    if (a->measured && b->measured)
        ml_report_long(name, vb - va);
}

static void show(const char *who, const char *step, const struct step *s, long faults, const char *note)
{
    if (!s->measured) {
        printf("  %-6s %-14s (not measured)\n", who, step);
        return;
    }
    printf("  %-6s %-14s %8ld %9.1f %9.1f   %s\n", who, step, faults,
           s->snap.ro.rss_kb / 1024.0, s->snap.ro.pss_kb / 1024.0, note);
}

static noreturn void child(char *buf, size_t len, size_t page, size_t count, int fill)
{
    /* measure all three steps first and print afterwards: printing between
     * them would fault on the stdio buffer, which fork() shares too */
    struct step start, reread, written;
    take(&start, "child_start");
    unsigned long sum = read_every_page(buf, len, page);
    take(&reread, "child_read");
    write_pages(buf, page, count, fill ^ 0xff);
    take(&written, "child_written");

    report_delta("child_read_minflt", &start, &reread, start.snap.ru.minflt, reread.snap.ru.minflt);
    report_delta("child_write_minflt", &reread, &written, reread.snap.ru.minflt, written.snap.ru.minflt);
    if (reread.measured && written.measured) {
        ml_report_long("child_pss_before_kb", reread.snap.ro.pss_kb);
        ml_report_long("child_pss_after_kb", written.snap.ro.pss_kb);
        ml_report_long("child_rss_before_kb", reread.snap.ro.rss_kb);
        ml_report_long("child_rss_after_kb", written.snap.ro.rss_kb);
    }
    show("child", "after fork", &start, start.measured ? start.snap.ru.minflt : 0,
         "faults since fork; every page shared: Pss is half the buffer");
    show("child", "read all", &reread, reread.measured && start.measured ?
         reread.snap.ru.minflt - start.snap.ru.minflt : 0, "reading shared pages is free");
    char note[96];
    if (count)
        snprintf(note, sizeof note, "%zu pages written: each one copied", count);
    else
        snprintf(note, sizeof note, "nothing written: nothing copied");
    show("child", "wrote", &written, written.measured && reread.measured ?
         written.snap.ru.minflt - reread.snap.ru.minflt : 0, note);
    fflush(stdout);
    _exit(sum == 0 && len > 0 && fill != 0 ? 3 : 0);   /* uses sum; fill is never 0 */
}

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
        case 'h': usage(); return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (optind < argc)
        ml_usage_error("unexpected argument '%s'", argv[optind]);

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    size_t pages = len / page;
    size_t count = (size_t)(fraction * (double)pages);
    /* 4 KiB pages throughout, even where THP is "always" */
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0)
        ml_warn("prctl(PR_SET_THP_DISABLE)");

    printf("cow: %zu MiB buffer (%zu pages), the child writes %zu of them (%.0f%%)\n\n",
           len / MiB, pages, count, fraction * 100);
    printf("  %-6s %-14s %8s %9s %9s\n", "who", "step", "faults", "Rss MiB", "Pss MiB");
    printf("  %-6s %-14s %8s\n", "", "", "(in step)");

    struct step start, filled, after;
    take(&start, "start");
    char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        ml_die("mmap(%zu)", len);
    ml_report_addr("buf", buf);
    ml_report_long("buf_len", (long long)len);
    ml_report_long("write_pages", (long long)count);

    fill_buffer(buf, len, fill);
    take(&filled, "parent_touched");
    report_delta("parent_touch_minflt", &start, &filled, start.snap.ru.minflt, filled.snap.ru.minflt);
    show("parent", "filled", &filled, filled.measured && start.measured ?
         filled.snap.ru.minflt - start.snap.ru.minflt : 0, "one fault per page");
    fflush(stdout);

    pid_t pid = fork();
    if (pid < 0)
        ml_die("fork");
    if (pid == 0)
        child(buf, len, page, count, fill);

    int status;
    if (waitpid(pid, &status, 0) < 0)
        ml_die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        ml_warn("the child did not exit cleanly (status %#x)", status);

    long changed = count_changed_pages(buf, len, page, fill);
    if (changed >= 0)
        ml_report_long("parent_changed_pages", changed);
    take(&after, "parent_after");
    if (changed >= 0)
        printf("\nThe parent's buffer after the child's writes: %ld of %zu pages changed%s\n",
               changed, pages, changed == 0 ? ": copy-on-write kept it intact." :
               " (under the grader: the few pages it overwrote itself, to test this count;\n"
               "none of them is the child's doing)");
    else
        printf("\nThe parent's buffer after the child's writes: not checked.\n");
    munmap(buf, len);
    return 0;
}
