/* ALT maps/heap_iter_minmax: exe_extent keeps min/max over all matches (no sort assumption), with the
 * iterator and VMA on the heap (calloc), strncmp bounded by sizeof path, ml_die on any error;
 * classify() tests anonymous mappings first, then [names], then exe via a perms lookup table. */
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

/* Find where our executable is mapped: the lowest start and the highest end
 * of the mappings whose path is `exe`. */
static struct extent exe_extent(const char *exe)
{
    struct extent e = {0, 0};
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    unsigned count = 0;
    struct ml_maps_iter *it = calloc(1, sizeof *it);   /* 8 KiB: keep it off the stack */
    struct ml_vma *v = calloc(1, sizeof *v);
    if (it == NULL || v == NULL)
        ml_die("calloc");
    if (ml_maps_open(it, 0) < 0)
        ml_die("ml_maps_open");
    for (;;) {
        int r = ml_maps_next(it, v);
        if (r == 0)
            break;
        if (r < 0)
            ml_die("ml_maps_next");
        if (strncmp(v->path, exe, sizeof v->path) == 0) {
            count++;
            lo = v->start < lo ? v->start : lo;
            hi = v->end > hi ? v->end : hi;
        }
    }
    ml_maps_close(it);
    free(v);
    free(it);
    if (count > 0) {
        e.start = lo;
        e.end = hi;
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
    const bool anonymous = v->path[0] == '\0';
    const bool readwrite = memcmp(v->perms, "rw", 2) == 0;
    const bool executable = strchr(v->perms, 'x') != NULL;

    /* anonymous memory first: bss right after the executable, or a plain mapping */
    if (anonymous && readwrite)
        return (v->start == self.end && self.end) ? "bss" : "mmap";
    if (anonymous)
        return "anon";
    if (v->path[0] == '[') {
        if (!strcmp(v->path, "[heap]"))
            return "heap";
        if (!strncmp(v->path, "[stack", strlen("[stack")))
            return "stack";
        return "special";
    }
    if (!strcmp(v->path, exe)) {
        static const char *const by_perm[] = {"rodata", "data", "text"};
        int idx = executable ? 2 : (v->perms[1] == 'w' ? 1 : 0);
        return by_perm[idx];
    }
    return executable ? "lib" : "lib-data";
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
