/* ALT faults "stdio_populate_write": fopen/fscanf of /proc/self/stat, status and smaps_rollup at every step, no getrusage();
 * madvise(MADV_POPULATE_WRITE) instead of MAP_POPULATE; the THP region placed with a
 * MAP_FIXED_NOREPLACE hint; memset per page (a blind tester's solution). */
/* faults.c - demand paging: what mmap() costs, and what touching costs.
 *
 * An anonymous mmap() only reserves a range of addresses. No page frame is
 * allocated and no page-table entry is filled until the memory is used: the
 * first access to each page faults, and the kernel supplies the page then.
 * This program maps a region, touches it, and shows the bill at each step.
 *
 * Usage: faults [--size SIZE] [--variant plain|populate|read-first|thp]
 *               [--misalign]
 * Try:   faults --size 64M                  one minor fault per 4 KiB page
 *        faults --variant populate          MAP_POPULATE pays up front, in mmap()
 *        faults --variant read-first        reads map the shared zero page;
 *                                           the writes after them copy it
 *                                           (a few kernels have no zero page:
 *                                           there the reads allocate)
 *        faults --variant thp               2 MiB pages: ~512x fewer faults
 *        faults --variant thp --misalign    the same, one page off 2 MiB
 *        MEMLAB_PAUSE=1 faults              stop at each step and read
 *                                           /proc/<pid>/status yourself
 * Needs: Linux. The thp variant needs transparent huge pages in "madvise" or
 *        "always" mode (/sys/kernel/mm/transparent_hugepage/enabled).
 *
 * What you should see: the mmap() costs no faults and no RSS; touching costs
 * one minor fault per page and RSS grows by SIZE; no major faults, since
 * nothing comes from disk.
 */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

enum variant { PLAIN, POPULATE, READ_FIRST, THP };
static const char *const variant_names[] = {"plain", "populate", "read-first", "thp"};

#define HUGE_2M (2 * MiB)

struct step {                   /* the process's counters after one step */
    const char *name;
    bool measured;
    struct ml_snapshot snap;
};

static void usage(void)
{
    printf("Usage: %s [--size SIZE] [--variant plain|populate|read-first|thp] [--misalign]\n"
           "Map SIZE bytes of anonymous memory (default 256M), touch every page, and\n"
           "show the page faults and RSS that each step cost.\n\n"
           "  -s, --size SIZE      bytes to map: 4096, 64K, 256M, 1G (default 256M)\n"
           "  -v, --variant NAME   plain       mmap, then write one byte per page\n"
           "                       populate    mmap with MAP_POPULATE, then write\n"
           "                       read-first  read every page, then write every page\n"
           "                       thp         a 2 MiB-aligned region with MADV_HUGEPAGE\n"
           "  -m, --misalign       thp: start the region one page after a 2 MiB boundary\n"
           "  -h, --help           this text\n\n"
           "Set MEMLAB_PAUSE=1 to stop at each step and inspect /proc/<pid>/ yourself.\n",
           ml_progname);
}


/* Counters read with stdio each time: /proc/self/stat (fields 10 and 12),
 * RssAnon from /proc/self/status, AnonHugePages from /proc/self/smaps_rollup. */
static void read_stat_faults(long *minflt, long *majflt)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        ml_die("fopen /proc/self/stat");
    char line[1024];
    if (!fgets(line, sizeof line, f))
        ml_die("read /proc/self/stat");
    fclose(f);
    char *rp = strrchr(line, ')');          /* comm may hold spaces */
    if (!rp)
        ml_die("malformed /proc/self/stat");
    char state;
    int ppid, pgrp, session, tty, tpgid;
    unsigned flags;
    unsigned long mn, cmn, mj;
    if (sscanf(rp + 2, "%c %d %d %d %d %d %u %lu %lu %lu", &state, &ppid, &pgrp, &session,
               &tty, &tpgid, &flags, &mn, &cmn, &mj) != 10)
        ml_die("parse /proc/self/stat");
    *minflt = (long)mn;
    *majflt = (long)mj;
}

static long proc_kb(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        ml_die("fopen %s", path);
    char name[64];
    long val = -1, v;
    while (fscanf(f, "%63s", name) == 1) {
        if (strcmp(name, key) == 0 && fscanf(f, "%ld", &v) == 1) {
            val = v;
            break;
        }
        fscanf(f, "%*[^\n]");
    }
    fclose(f);
    return val;
}

/* Record the counters for one step and tell the grader (if any) where we are. */
static void take(struct step *s, const char *name)
{
    s->name = name;
    s->measured = false;
    memset(&s->snap, 0, sizeof s->snap);
    s->snap.st.rss_anon_kb = proc_kb("/proc/self/status", "RssAnon:");
    s->snap.ro.anon_huge_kb = proc_kb("/proc/self/smaps_rollup", "AnonHugePages:");
    read_stat_faults(&s->snap.ru.minflt, &s->snap.ru.majflt);   /* faults last */
    s->measured = true;
    ml_checkpoint(name);
}

/* Map `len` bytes for the variant. For thp, the region must start on a 2 MiB
 * boundary (plus one page with --misalign) and be advised MADV_HUGEPAGE. */
static char *map_region(enum variant v, size_t len, bool misalign)
{
    char *p;
    void *hint = NULL;
    int extra = 0;
    if (v == THP) {
        /* find a free range big enough, give it back, and ask for an aligned
         * address inside it */
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        char *probe = mmap(NULL, len + 2 * HUGE_2M, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (probe == MAP_FAILED)
            ml_die("mmap(probe)");
        uintptr_t a = ((uintptr_t)probe + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1);
        if (misalign)
            a += page;
        munmap(probe, len + 2 * HUGE_2M);
        hint = (void *)a;
        extra = MAP_FIXED_NOREPLACE;
    }
    p = mmap(hint, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
    if (p == MAP_FAILED)
        ml_die("mmap(%zu)", len);
    if (hint && p != hint)
        ml_die("mmap put the region at %p, not %p", (void *)p, hint);
    if (v == POPULATE && madvise(p, len, MADV_POPULATE_WRITE) < 0)
        ml_die("madvise(MADV_POPULATE_WRITE)");
    if (v == THP && madvise(p, len, MADV_HUGEPAGE) < 0)
        ml_die("madvise(MADV_HUGEPAGE)");
    return p;
}

/* Write one byte in every page of [p, p + len). */
static void write_pages(char *p, size_t len, size_t page)
{
    (void)page;
    long step = sysconf(_SC_PAGESIZE);
    for (char *q = p; q < p + len; q += step)
        memset(q, 0x5a, 1);
}

/* Read one byte in every page; return their sum so the reads are not optimised away. */
static unsigned long read_pages(const char *p, size_t len, size_t page)
{
    unsigned long sum = 0;
    for (size_t n = 0; n < len / page; n++)
        sum += *(const volatile unsigned char *)(p + n * page);
    return sum;
}

static void show(const struct step *s, const struct step *prev, const char *note)
{
    if (!s->measured) {
        printf("  %-14s (not measured)\n", s->name);
        return;
    }
    long dmin = prev && prev->measured ? s->snap.ru.minflt - prev->snap.ru.minflt : 0;
    long dmaj = prev && prev->measured ? s->snap.ru.majflt - prev->snap.ru.majflt : 0;
    printf("  %-14s %9ld %8ld %10.1f %10.1f   %s\n", s->name, dmin, dmaj,
           s->snap.st.rss_anon_kb / 1024.0, s->snap.ro.anon_huge_kb / 1024.0, note);
}

/* Report the difference of one counter between two steps, if both were measured. */
static void report_delta(const char *name, const struct step *a, const struct step *b, long va, long vb)
{
    if (a->measured && b->measured)
        ml_report_long(name, vb - va);
}

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    size_t len = 256 * MiB;
    enum variant v = PLAIN;
    bool misalign = false;

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
                ml_usage_error("--variant '%s': expected plain, populate, read-first or thp", optarg);
            break;
        case 'm': misalign = true; break;
        case 'h': usage(); return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (optind < argc)
        ml_usage_error("unexpected argument '%s'", argv[optind]);

    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    len = (len + page - 1) / page * page;
    if (v == THP)
        len = (len + HUGE_2M - 1) / HUGE_2M * HUGE_2M;
    else if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) < 0)
        /* a THP "always" machine would otherwise back this with 2 MiB pages */
        ml_warn("prctl(PR_SET_THP_DISABLE)");

    printf("faults: %s variant, %zu MiB = %zu pages of %zu KiB\n\n", variant_names[v],
           len / MiB, len / page, page / KiB);
    printf("  %-14s %9s %8s %10s %10s\n", "step", "minflt", "majflt", "anon MiB", "huge MiB");
    printf("  %-14s %18s %21s\n", "", "(in this step)", "(after it)");

    struct step start, mapped, reread, touched;
    take(&start, "start");
    show(&start, NULL, "before mmap()");

    char *p = map_region(v, len, misalign);
    ml_report_addr("region", p);
    ml_report_long("region_len", (long long)len);
    take(&mapped, "mapped");
    show(&mapped, &start, v == POPULATE ? "MAP_POPULATE filled every page inside mmap()"
                                        : "addresses reserved, nothing allocated");

    unsigned long sum = 0;
    bool zero_page = true;
    if (v == READ_FIRST) {
        sum = read_pages(p, len, page);
        take(&reread, "read");
        zero_page = reread.measured && mapped.measured &&
                    reread.snap.st.rss_anon_kb - mapped.snap.st.rss_anon_kb < (long)(len / KiB / 2);
        show(&reread, &mapped, zero_page ? "reads map the shared zero page: faults, but no RSS"
                                         : "reads allocated pages: this kernel maps no zero page");
        report_delta("read_minflt", &mapped, &reread, mapped.snap.ru.minflt, reread.snap.ru.minflt);
        report_delta("read_anon_kb", &mapped, &reread, mapped.snap.st.rss_anon_kb, reread.snap.st.rss_anon_kb);
    }
    write_pages(p, len, page);
    take(&touched, "touched");
    const struct step *before = v == READ_FIRST ? &reread : &mapped;
    show(&touched, before, v == POPULATE ? "already present: (almost) no faults"
                         : v == READ_FIRST ? (zero_page ? "each write copies the zero page: a fault again"
                                                        : "already private pages: no fault")
                         : v == THP ? (misalign ? "2 MiB pages inside, 4 KiB faults at the unaligned ends"
                                                : "one fault per 2 MiB huge page")
                                    : "one minor fault per page");

    report_delta("mmap_minflt", &start, &mapped, start.snap.ru.minflt, mapped.snap.ru.minflt);
    report_delta("mmap_anon_kb", &start, &mapped, start.snap.st.rss_anon_kb, mapped.snap.st.rss_anon_kb);
    report_delta("touch_minflt", before, &touched, before->snap.ru.minflt, touched.snap.ru.minflt);
    report_delta("touch_majflt", &start, &touched, start.snap.ru.majflt, touched.snap.ru.majflt);
    report_delta("touch_anon_kb", before, &touched, before->snap.st.rss_anon_kb, touched.snap.st.rss_anon_kb);
    if (touched.measured)
        ml_report_long("huge_kb", touched.snap.ro.anon_huge_kb);

    if (touched.measured && mapped.measured) {
        long faults = touched.snap.ru.minflt - mapped.snap.ru.minflt;
        printf("\n%zu pages %s for %ld minor faults (%.3f per page)", len / page,
               v == READ_FIRST ? "read, then written," : "touched", faults,
               (double)faults / (double)(len / page));
        if (touched.snap.ro.anon_huge_kb > 0)
            printf("; %ld MiB are backed by 2 MiB pages", touched.snap.ro.anon_huge_kb / 1024);
        printf(".\n");
    }
    (void)sum;
    munmap(p, len);
    ml_checkpoint("done");
    return 0;
}
