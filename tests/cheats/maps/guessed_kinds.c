/* CHEAT (maps/guessed_kinds): half honest. Everything is the real lab (real
 * objects, their real addresses, the real mapping of each from
 * /proc/self/maps, the real load address and offsets), except the kind of
 * memory: instead of classifying the mapping (classify() of the lab), it
 * reports the kind a student would guess from the object's name, from a
 * hard-coded table (text -> text, heap_small -> heap, heap_large -> mmap, ...).
 * The guess happens to be right on this layout, so the grader can only catch
 * it where the kinds are not determined by the names. It earns the offsets
 * (computed for real); every check that grades the lab's kinds should fail. */
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
    struct ml_maps_iter it;
    struct ml_vma v;
    int r;
    if (ml_maps_open(&it, 0) < 0)
        ml_die("open /proc/self/maps");
    while ((r = ml_maps_next(&it, &v)) == 1) {
        if (strcmp(v.path, exe) != 0)
            continue;
        if (e.start == 0 || v.start < e.start)
            e.start = v.start;
        if (v.end > e.end)
            e.end = v.end;
    }
    if (r < 0)
        ml_die("read /proc/self/maps");
    ml_maps_close(&it);
    return e;
}

/* Name the kind of memory a mapping is:
 *   text / rodata / data   the executable's own mappings: r-x, r--, rw-
 *   bss                    the anonymous rw mapping that starts where they end
 *   heap, stack            [heap], [stack]
 *   mmap                   any other anonymous rw mapping
 *   lib                    a shared library's code (r-x); lib-data for the rest
 */
static const char *guess_kind(const char *object)
{
    static const char *const table[][2] = {
        {"text", "text"}, {"rodata", "rodata"}, {"data", "data"}, {"bss", "bss"},
        {"heap_small", "heap"}, {"heap_large", "mmap"}, {"stack", "stack"}, {"libc", "lib"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i][0], object) == 0)
            return table[i][1];
    return "other";
}

static void print_maps(const char *exe)
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
           "kind", "offset in file mapping");
    char name[64];
    for (size_t i = 0; i < nobj; i++) {
        const struct object *o = &objects[i];
        struct ml_vma v;
        int found = ml_maps_find(0, (uintptr_t)o->addr, &v);
        if (found < 0)
            ml_die("read /proc/self/maps");
        const char *kind = guess_kind(o->name);      /* the cheat: no classify() */
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
        print_maps(exe);
    free(small_block);
    free(large_block);
    ml_checkpoint("done");
    return 0;
}
