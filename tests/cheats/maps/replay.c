/* CHEAT (maps/replay): replays a previous run. tests/test_cheats.py grades the
 * reference lab once with the same parameters and pastes every figure of its
 * runs into the table below (at the @RECORDED_FIGURES@ marker); this program
 * then allocates its blocks like the lab (same globals, same malloc() calls,
 * so its layout is as close as possible to the recorded one) and reports the
 * recorded figures of the matching run (main, again, or fixed1 when started
 * without randomisation) instead of looking at itself. It never reads
 * /proc/self/maps. Old addresses are worthless once ASLR moves everything:
 * must score 0 on everything but the pure "it ran" check. */
#include "memlab.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>

#define BSS_SIZE (1024 * 1024)

static const char banner[] = "a read-only string: it lives in .rodata";
int initialised = 42;
static char zeroed[BSS_SIZE];

struct rec {
    const char *run, *name, *value;
};

static const struct rec recorded[] = {
    /* @RECORDED_FIGURES@ */
    {NULL, NULL, NULL},
};

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
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    char *small_block = malloc(small), *large_block = malloc(large);
    if (small_block == NULL || large_block == NULL)
        ml_die("malloc");
    small_block[0] = large_block[0] = 1;
    zeroed[BSS_SIZE / 2] = (char)initialised;

    bool norandom = (personality(0xffffffff) & ADDR_NO_RANDOMIZE) != 0;
    const char *run = norandom ? "fixed1" : quiet ? "again" : "main";
    int n = 0;
    for (const struct rec *r = recorded; r->run; r++) {
        if (strcmp(r->run, run) == 0) {
            ml_report_str(r->name, r->value);
            n++;
        }
    }
    if (n == 0)
        ml_warn("no recorded figures for run '%s' (not filled in by the test?)", run);
    printf("maps: %s, replaying %d figures of run '%s' (%s)\n", ml_progname, n, run, banner);
    ml_checkpoint("placed");
    free(small_block);
    free(large_block);
    ml_checkpoint("done");
    return 0;
}
