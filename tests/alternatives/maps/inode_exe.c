/* ALT maps "inode_exe": raw open/read of /proc/self/maps into a static buffer with its own
 * hex parser; the executable's mappings are found by the device and inode of
 * /proc/self/exe (stat), not by its path, and classify() is a switch. */
/* maps.c - where things live in a process's address space.
 *
 * Every object of a running program has an address, and every address belongs
 * to one mapping (VMA) in /proc/<pid>/maps: the executable's code (r-x), its
 * read-only data (r--) and initialised data (rw-), the zero-filled .bss right
 * after them, the heap that brk() grows, anonymous mappings from mmap(), the
 * shared libraries, and the stack. This program places one object of each kind,
 * finds the mapping that holds it, and names the kind of memory.
 *
 * Usage: maps [--small SIZE] [--large SIZE] [--quiet]
 * Try:   maps                       the table, then the whole /proc/self/maps
 *        maps; maps                 run it twice: ASLR moves everything ...
 *        setarch -R ./maps          ... unless randomisation is turned off
 *        maps --large 64M           a bigger block: still its own mapping
 *        MEMLAB_PAUSE=1 maps        stop while placed; read /proc/<pid>/maps
 * Needs: Linux. Compiled as a position-independent executable (the default).
 *
 * What you should see: code in an r-xp mapping of the program file, the
 * read-only string in r--p, the initialised global in rw-p of the file, the
 * zero-filled array in the anonymous mapping right after the file, the small
 * block in [heap], the large block in a mapping of its own, the local variable
 * in [stack]. Offsets inside the executable never change between runs; the
 * addresses do, unless ASLR is off.
 */
#include "memlab.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define BSS_SIZE (1024 * 1024)

static const char banner[] = "a read-only string: it lives in .rodata";
int initialised = 42;                          /* .data */
static char zeroed[BSS_SIZE];                  /* .bss: no bytes in the file */

struct object {
    const char *name;
    const void *addr;
};

struct extent {                 /* the mappings of our own executable */
    uintptr_t start, end;
};

static void usage(void)
{
    printf("Usage: %s [--small SIZE] [--large SIZE] [--quiet]\n"
           "Place an object in each kind of memory and show the mapping that holds it.\n\n"
           "  -s, --small SIZE   the small heap block (default 128)\n"
           "  -l, --large SIZE   the large block, mapped on its own (default 8M)\n"
           "  -q, --quiet        the table only, not the whole maps file\n"
           "  -h, --help         this text\n",
           ml_progname);
}

/* The executable is recognised by device and inode (stat of /proc/self/exe),
 * read from a raw dump of /proc/self/maps parsed by hand. */
static dev_t exe_dev;
static ino_t exe_ino;
static bool exe_known;

static char rawmaps[1 << 16];

static size_t slurp_maps(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        ml_die("open /proc/self/maps");
    size_t got = 0;
    for (;;) {
        if (got >= sizeof rawmaps - 1)
            ml_die("/proc/self/maps is larger than %zu bytes", sizeof rawmaps);
        ssize_t n = read(fd, rawmaps + got, sizeof rawmaps - 1 - got);
        if (n < 0)
            ml_die("read /proc/self/maps");
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    rawmaps[got] = '\0';
    return got;
}

static unsigned long hexfield(const char **s)
{
    unsigned long v = 0;
    for (;;) {
        char c = **s;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return v;
        v = v * 16 + (unsigned long)d;
        (*s)++;
    }
}

static bool is_exe_line(unsigned maj, unsigned min, unsigned long ino)
{
    return exe_known && ino != 0 && ino == (unsigned long)exe_ino &&
           maj == (unsigned)major(exe_dev) && min == (unsigned)minor(exe_dev);
}

static struct extent exe_extent(const char *exe)
{
    struct extent e = {0, 0};
    struct stat sb;
    if (stat(exe, &sb) == 0) {
        exe_dev = sb.st_dev;
        exe_ino = sb.st_ino;
        exe_known = true;
    }
    size_t n = slurp_maps();
    const char *line = rawmaps, *endbuf = rawmaps + n;
    bool first = true;
    while (line < endbuf) {
        const char *nl = memchr(line, '\n', (size_t)(endbuf - line));
        if (!nl)
            nl = endbuf;
        const char *q = line;
        unsigned long lo = hexfield(&q);
        q++;                                    /* '-' */
        unsigned long hi = hexfield(&q);
        q += 1 + 4 + 1;                         /* ' perms ' */
        (void)hexfield(&q);                     /* offset */
        q++;
        unsigned maj = (unsigned)hexfield(&q);
        q++;                                    /* ':' */
        unsigned min = (unsigned)hexfield(&q);
        q++;
        unsigned long ino = strtoul(q, NULL, 10);
        if (is_exe_line(maj, min, ino)) {
            if (first || lo < e.start)
                e.start = lo;
            if (first || hi > e.end)
                e.end = hi;
            first = false;
        }
        line = nl + 1;
    }
    return e;
}

/* Name the kind of memory a mapping is:
 *   text / rodata / data   the executable's own mappings: r-x, r--, rw-
 *   bss                    the anonymous rw mapping that starts where they end
 *   heap, stack            [heap], [stack]
 *   mmap                   any other anonymous rw mapping
 *   lib                    a shared library's code (r-x); lib-data for the rest
 */
static const char *classify(const struct ml_vma *v, const char *exe, struct extent self)
{
    const char *perm = v->perms;
    if (is_exe_line(v->dev_major, v->dev_minor, v->inode) || strcmp(v->path, exe) == 0) {
        switch (perm[2] == 'x' ? 2 : perm[1] == 'w' ? 1 : 0) {
        case 2: return "text";
        case 1: return "data";
        default: return "rodata";
        }
    }
    if (v->path[0] == '[') {
        if (!strcmp(v->path, "[heap]"))
            return "heap";
        if (!strcmp(v->path, "[stack]"))
            return "stack";
        return v->path;                 /* [vdso], [vvar], ... */
    }
    if (v->path[0] != '\0')
        return perm[2] == 'x' ? "lib" : "lib-data";
    if (memcmp(perm, "rw", 2) != 0)
        return "anon";
    if (v->start == self.end && self.end != 0)
        return "bss";
    return "mmap";
}

static void print_maps(const char *exe, struct extent self, const void *large)
{
    struct ml_maps_iter it;
    struct ml_vma v;
    if (ml_maps_open(&it, 0) < 0)
        ml_die("open /proc/self/maps");
    printf("\n/proc/self/maps:\n");
    while (ml_maps_next(&it, &v) == 1) {
        const char *p = v.path;
        if (strcmp(p, exe) == 0)
            p = "(this program)";
        else if (p[0] == '\0' && v.start == self.end)
            p = "(anonymous: the rest of .bss)";
        else if (p[0] == '\0' && (uintptr_t)large >= v.start && (uintptr_t)large < v.end)
            p = "(anonymous: holds the large block)";
        printf("  %012lx-%012lx %s %8llx %s\n", (unsigned long)v.start, (unsigned long)v.end,
               v.perms, v.offset, p);
    }
    ml_maps_close(&it);
}

int main(int argc, char **argv)
{
    ml_init("maps", argc, argv);
    size_t small = 128, large = 8 * MiB;
    bool quiet = false;

    static const struct option opts[] = {
        {"small", required_argument, NULL, 's'},
        {"large", required_argument, NULL, 'l'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "s:l:qh", opts, NULL)) != -1) {
        switch (c) {
        case 's': small = ml_parse_size(optarg, "--small"); break;
        case 'l': large = ml_parse_size(optarg, "--large"); break;
        case 'q': quiet = true; break;
        case 'h': usage(); return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (optind < argc)
        ml_usage_error("unexpected argument '%s'", argv[optind]);

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        ml_die("readlink /proc/self/exe");
    exe[n] = '\0';

    int on_stack = 7;
    char *small_block = malloc(small);
    char *large_block = malloc(large);
    if (small_block == NULL || large_block == NULL)
        ml_die("malloc");
    small_block[0] = large_block[0] = 1;
    zeroed[BSS_SIZE / 2] = (char)initialised;

    const struct object objects[] = {
        {"text", (const void *)&main},
        {"rodata", banner},
        {"data", &initialised},
        {"bss", &zeroed[BSS_SIZE / 2]},
        {"heap_small", small_block},
        {"heap_large", large_block},
        {"stack", &on_stack},
        {"libc", (const void *)&getpid},
    };
    const size_t nobj = sizeof objects / sizeof objects[0];

    struct extent self = exe_extent(exe);
    printf("maps: %s (loaded at %#lx)\n\n", ml_progname, (unsigned long)self.start);
    printf("  %-11s %-16s %-29s %-5s %-8s %s\n", "object", "address", "mapping", "perms",
           "kind", "offset from the load address");
    char name[64];
    for (size_t i = 0; i < nobj; i++) {
        const struct object *o = &objects[i];
        struct ml_vma v;
        int found = ml_maps_find(0, (uintptr_t)o->addr, &v);
        if (found < 0)
            ml_die("read /proc/self/maps");
        const char *kind = found ? classify(&v, exe, self) : "unmapped";
        uintptr_t a = (uintptr_t)o->addr;
        bool in_exe = self.end && a >= self.start && a < self.end;

        snprintf(name, sizeof name, "obj.%s.addr", o->name);
        ml_report_addr(name, o->addr);
        snprintf(name, sizeof name, "obj.%s.kind", o->name);
        ml_report_str(name, kind);
        if (found) {
            snprintf(name, sizeof name, "obj.%s.vma_start", o->name);
            ml_report_addr(name, (void *)v.start);
            snprintf(name, sizeof name, "obj.%s.vma_end", o->name);
            ml_report_addr(name, (void *)v.end);
            snprintf(name, sizeof name, "obj.%s.perms", o->name);
            ml_report_str(name, v.perms);
        }
        if (in_exe) {
            snprintf(name, sizeof name, "obj.%s.offset", o->name);
            ml_report_long(name, (long long)(a - self.start));
        }
        char range[40] = "-";
        if (found)
            snprintf(range, sizeof range, "%lx-%lx", (unsigned long)v.start, (unsigned long)v.end);
        char off[24] = "";
        if (in_exe)
            snprintf(off, sizeof off, "+%#lx", (unsigned long)(a - self.start));
        printf("  %-11s %-16p %-29s %-5s %-8s %s\n", o->name, o->addr, range,
               found ? v.perms : "-", kind, off);
    }
    ml_report_long("large_size", (long long)large);
    ml_checkpoint("placed");
    if (!quiet)
        print_maps(exe, self, large_block);
    free(small_block);
    free(large_block);
    ml_checkpoint("done");
    return 0;
}
