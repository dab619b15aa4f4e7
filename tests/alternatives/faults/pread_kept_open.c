/* ALT faults "pread_kept_open": getrusage() for the faults; /proc/self/status and smaps_rollup opened once and read again
 * with pread() at offset 0, parsed by hand (a blind tester's solution): the trace must credit
 * reads through a descriptor opened long before the checkpoint. */
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
#include <fcntl.h>
#include <sys/resource.h>

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


/* Our own reader: getrusage() for the fault counters, and /proc/self/status and
 * /proc/self/smaps_rollup opened once and read again with pread() at offset 0. */
static int status_fd = -1, rollup_fd = -1;

static long field_kb(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *l = text; l && *l; ) {
        if (strncmp(l, key, klen) == 0)
            return strtol(l + klen, NULL, 10);
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    return -1;
}

static void slurp(int fd, char *buf, size_t size, const char *what)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = pread(fd, buf + got, size - 1 - got, (off_t)got);
        if (n < 0)
            ml_die("pread %s", what);
        if (n == 0 || got + (size_t)n >= size - 1) {
            got += (size_t)(n > 0 ? n : 0);
            break;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
}

static void my_snapshot(struct ml_snapshot *s)
{
    static char buf[8192];
    if (status_fd < 0 && (status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)) < 0)
        ml_die("open /proc/self/status");
    if (rollup_fd < 0 && (rollup_fd = open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC)) < 0)
        ml_die("open /proc/self/smaps_rollup");
    memset(s, 0, sizeof *s);
    struct rusage r;
    if (getrusage(RUSAGE_SELF, &r) < 0)
        ml_die("getrusage");
    s->ru.minflt = r.ru_minflt;
    s->ru.majflt = r.ru_majflt;
    s->ru.maxrss_kb = r.ru_maxrss;
    slurp(status_fd, buf, sizeof buf, "/proc/self/status");
    s->st.rss_anon_kb = field_kb(buf, "RssAnon:");
    s->st.vm_rss_kb = field_kb(buf, "VmRSS:");
    slurp(rollup_fd, buf, sizeof buf, "/proc/self/smaps_rollup");
    s->ro.anon_huge_kb = field_kb(buf, "AnonHugePages:");
    s->ro.rss_kb = field_kb(buf, "Rss:");
}

/* Record the counters for one step and tell the grader (if any) where we are. */
static void take(struct step *s, const char *name)
{
    s->name = name;
    s->measured = false;
    my_snapshot(&s->snap);
    s->measured = true;
    ml_checkpoint(name);
}

/* Map `len` bytes for the variant. For thp, the region must start on a 2 MiB
 * boundary (plus one page with --misalign) and be advised MADV_HUGEPAGE. */
static char *map_region(enum variant v, size_t len, bool misalign)
{
    char *p;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    if (v == POPULATE)
        flags |= MAP_POPULATE;
    if (v != THP) {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
        if (p == MAP_FAILED)
            ml_die("mmap(%zu)", len);
        return p;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t off = misalign ? page : 0;
    size_t total = len + HUGE_2M + off;
    char *raw = mmap(NULL, total, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (raw == MAP_FAILED)
        ml_die("mmap(%zu)", total);
    uintptr_t a = ((uintptr_t)raw + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1);
    p = (char *)a + off;
    size_t head = (size_t)(p - raw);
    if (head && munmap(raw, head) < 0)
        ml_die("munmap head");
    size_t tail = total - head - len;
    if (tail && munmap(p + len, tail) < 0)
        ml_die("munmap tail");
    if (madvise(p, len, MADV_HUGEPAGE) < 0)
        ml_die("madvise(MADV_HUGEPAGE)");
    return p;
}

/* Write one byte in every page of [p, p + len). */
static void write_pages(char *p, size_t len, size_t page)
{
    for (size_t i = 0; i < len; i += page)
        p[i] = 1;
}

/* Read one byte in every page; return their sum so the reads are not optimised away. */
static unsigned long read_pages(const char *p, size_t len, size_t page)
{
    unsigned long sum = 0;
    const volatile char *vp = p;
    for (size_t i = 0; i < len; i += page)
        sum += (unsigned char)vp[i];
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
