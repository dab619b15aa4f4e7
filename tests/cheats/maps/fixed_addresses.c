/* CHEAT (maps/fixed_addresses): half honest. Really allocates the small and
 * the large block (so a [heap] and a large anonymous mapping exist), but
 * reports the same fixed, plausible addresses as maps/liar.c (the layout of a
 * run without randomisation: 0x555555554000 for the executable, the heap
 * right after its bss, the large block just below libc, the stack near
 * 0x7fffffff....), with textbook kinds, mappings and offsets, instead of the
 * addresses of its objects. It never reads /proc/self/maps. Under setarch -R
 * the guesses land in mappings of the right kinds, so the only thing that
 * can tell is whether the addresses are the program's own: must score 0. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

struct fake {
    const char *name, *kind, *perms;
    unsigned long addr, vma_start, vma_end;
};

#define EXE 0x555555554000UL

int main(int argc, char **argv)
{
    ml_init("maps", argc, argv);
    size_t small = 128, large = 8 * MiB;
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
        case 'q': break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    char *small_block = malloc(small), *large_block = malloc(large);   /* the honest part */
    if (small_block == NULL || large_block == NULL)
        ml_die("malloc");
    small_block[0] = large_block[0] = 1;
    unsigned long lsize = (large + 4096 + 4095) & ~4095UL;
    const struct fake objs[] = {
        {"text", "text", "r-xp", EXE + 0x1240, EXE + 0x1000, EXE + 0x3000},
        {"rodata", "rodata", "r--p", EXE + 0x3010, EXE + 0x3000, EXE + 0x4000},
        {"data", "data", "rw-p", EXE + 0x5010, EXE + 0x5000, EXE + 0x6000},
        {"bss", "bss", "rw-p", EXE + 0x6040, EXE + 0x6000, EXE + 0x7000},
        {"heap_small", "heap", "rw-p", EXE + 0x72a0, EXE + 0x7000, EXE + 0x28000},
        {"heap_large", "mmap", "rw-p", 0x7ffff7dd3000UL - lsize + 0x10, 0x7ffff7dd3000UL - lsize,
         0x7ffff7dd3000UL},
        {"stack", "stack", "rw-p", 0x7fffffffe3cc, 0x7ffffffde000UL, 0x7ffffffff000UL},
        {"libc", "lib", "r-xp", 0x7ffff7ea84e0UL, 0x7ffff7df9000UL, 0x7ffff7f4f000UL},
    };
    char name[64];
    for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++) {
        const struct fake *o = &objs[i];
        snprintf(name, sizeof name, "obj.%s.addr", o->name);
        ml_report_addr(name, (void *)o->addr);
        snprintf(name, sizeof name, "obj.%s.kind", o->name);
        ml_report_str(name, o->kind);
        snprintf(name, sizeof name, "obj.%s.vma_start", o->name);
        ml_report_addr(name, (void *)o->vma_start);
        snprintf(name, sizeof name, "obj.%s.vma_end", o->name);
        ml_report_addr(name, (void *)o->vma_end);
        snprintf(name, sizeof name, "obj.%s.perms", o->name);
        ml_report_str(name, o->perms);
        if (i < 4) {
            snprintf(name, sizeof name, "obj.%s.offset", o->name);
            ml_report_long(name, (long long)(o->addr - EXE));
        }
    }
    ml_report_long("large_size", (long long)large);
    ml_checkpoint("placed");
    free(small_block);
    free(large_block);
    ml_checkpoint("done");
    return 0;
}
