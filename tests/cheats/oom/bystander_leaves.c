/* CHEAT (oom/bystander_leaves): in the adj run, the bystander forks a decoy that
 * inherits its oom_score_adj 1000 and its group and holds twice its memory, then
 * exits by itself; the OOM killer kills the decoy, and the lab reports the
 * bystander "killed by SIGKILL". The bystander is gone, the group counted a kill,
 * no process of the lab sent a signal or wrote another adj. Only strace's record
 * of how the bystander ended ("+++ exited with 0 +++") tells: adj_picks_the_victim
 * must fail. The rest is the reference. */
/* oom.c - the OOM killer's choice, inside a memory cgroup of our own.
 *
 * When memory runs out and nothing can be reclaimed, the kernel kills a
 * process. It picks the one with the highest "badness": roughly the memory it
 * holds (RSS, swap, page tables) plus oom_score_adj thousandths of the memory
 * available (the group's limit inside a cgroup). /proc/<pid>/oom_score shows
 * the result, scaled; /proc/<pid>/oom_score_adj (-1000..1000) is the knob.
 * Anyone may raise their own adj; lowering it below where it started needs
 * CAP_SYS_RESOURCE.
 *
 * This program first reads and moves its own score, then creates a memory
 * cgroup of its own (under the cgroup it runs in), limits it, and fills it with
 * two processes: a "bystander" that holds a quarter of the limit, and an
 * "allocator" that asks for more than what is left. Only the group runs out
 * of memory; the rest of the machine never notices.
 *
 * Usage: oom [--limit SIZE] [--raise N] [--no-adj] [--scores-only]
 * Try:   oom                      the bystander has oom_score_adj 1000: it dies
 *        oom --no-adj             equal adj: the bigger allocator dies
 *        oom --scores-only        only the oom_score part (no cgroup needed)
 *        MEMLAB_PAUSE=1 oom       stop at each step; compare the two children's
 *                                 /proc/<pid>/oom_score while they hold memory
 * Needs: Linux; for the kill, a writable memory cgroup (root, or a delegated
 *        cgroup; in a container: --privileged). Works on cgroup v1 and v2.
 */
#include "memlab.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(void)
{
    printf("Usage: %s [--limit SIZE] [--raise N] [--no-adj] [--scores-only]\n"
           "Read and move this process's OOM score, then run two processes into the\n"
           "limit of a memory cgroup of their own and see which one the kernel kills.\n\n"
           "  -l, --limit SIZE    the group's memory limit (default 64M)\n"
           "  -r, --raise N       raise our oom_score_adj to N, 1..1000 (default 500)\n"
           "  -n, --no-adj        the bystander keeps oom_score_adj 0 (the default is 1000)\n"
           "  -s, --scores-only   stop after the oom_score part\n"
           "  -h, --help          this text\n",
           ml_progname);
}

/* This process's /proc/self/oom_score and oom_score_adj; 0, or -1 on failure. */
static int read_scores(long *score, long *adj)
{
    /* BEGIN SOLUTION */
    char buf[64];
    if (ml_read_file("/proc/self/oom_score", buf, sizeof buf) < 0)
        return -1;
    *score = strtol(buf, NULL, 10);
    if (ml_read_file("/proc/self/oom_score_adj", buf, sizeof buf) < 0)
        return -1;
    *adj = strtol(buf, NULL, 10);
    return 0;
    /* STUB
    // TODO: read both files (ml_read_file) and convert them to numbers
    (void)score; (void)adj;
    return -1;
    END SOLUTION */
}

/* Write value to /proc/self/oom_score_adj: 0, or the errno of the failure. */
static int set_adj(long value)
{
    /* BEGIN SOLUTION */
    char text[16];
    int n = snprintf(text, sizeof text, "%ld", value);
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = write(fd, text, (size_t)n) == n ? 0 : errno;
    close(fd);
    return err;
    /* STUB
    // TODO: write the number to /proc/self/oom_score_adj and return 0, or
    // the errno the kernel answered with (EACCES when lowering needs privilege)
    (void)value;
    return ENOSYS;
    END SOLUTION */
}

/* Allocate `len` bytes and make every page resident; returns the memory. */
static char *hold(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* BEGIN SOLUTION */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
    /* STUB
    // TODO: touch every page, or the memory is only promised, not used
    END SOLUTION */
    return p;
}

static void report_scores(const char *prefix, long score, long adj)
{
    char name[64];
    snprintf(name, sizeof name, "%s_score", prefix);
    ml_report_long(name, score);
    snprintf(name, sizeof name, "%s_adj", prefix);
    ml_report_long(name, adj);
}

/* Part 1: the score of this process, raised and (perhaps) lowered. */
static void scores(long raise)
{
    long score = -1, adj = -1;
    if (read_scores(&score, &adj) < 0) {
        printf("  could not read the scores (read_scores() is not written yet?)\n");
    } else {
        report_scores("initial", score, adj);
        printf("  at start:        oom_score %4ld   oom_score_adj %5ld\n", score, adj);
    }
    ml_checkpoint("scores");

    int err = set_adj(raise);
    if (read_scores(&score, &adj) == 0 && err == 0)
        report_scores("raised", score, adj);
    printf("  adj := %-5ld      %s: oom_score %4ld   oom_score_adj %5ld\n", raise,
           err ? strerror(err) : "ok", score, adj);
    ml_checkpoint("raised");

    err = set_adj(-raise);
    ml_report_str("lower_result", err == 0 ? "ok" : ml_errno_name(err));
    if (read_scores(&score, &adj) == 0)
        report_scores("lowered", score, adj);
    printf("  adj := %-5ld     %s: oom_score %4ld   oom_score_adj %5ld\n", -raise,
           err == 0 ? "ok" : ml_errno_name(err), score, adj);
    if (err == EACCES)
        printf("  Lowering below where we started needs CAP_SYS_RESOURCE; raising never does.\n");
    ml_checkpoint("lowered");
    set_adj(0);     /* back to neutral (allowed: not below where we started) */
}

/* Describe how a child ended, from its wait status: "completed" (exit 0),
 * "exited with N", or "killed by SIGKILL" (any signal, by its name). */
static void fate(int status, char *buf, size_t len)
{
    /* BEGIN SOLUTION */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        snprintf(buf, len, "completed");
    else if (WIFEXITED(status))
        snprintf(buf, len, "exited with %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by SIG%s", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, len, "status %#x", status);
    /* STUB
    // TODO: WIFEXITED / WEXITSTATUS / WIFSIGNALED / WTERMSIG (sigabbrev_np
    // gives "KILL" for SIGKILL)
    (void)status;
    snprintf(buf, len, "?");
    END SOLUTION */
}

/* Part 2: two processes in a limited group; who dies? */
static void kill_part(size_t limit, bool adj)
{
    struct ml_cgroup cg;
    char why[512];
    if (ml_cgroup_create(&cg, "memlab-oom", why, sizeof why) < 0) {
        ml_report_str("cgroup_error", why);
        printf("\nNo memory cgroup for the second part: %s.\n", why);
        return;
    }
    if (ml_cgroup_guard(&cg) < 0)
        ml_warn("no guard process: the group may stay behind if this program is killed");
    if (ml_cgroup_set_limit(&cg, limit) < 0) {
        ml_warn("cannot set the limit of %s", cg.path);
        ml_cgroup_destroy(&cg);
        return;
    }
    ml_report_str("cgroup", cg.path);
    ml_report_long("limit", (long long)limit);
    size_t bystander_len = limit / 4, allocator_len = limit - limit / 8 - limit / 16;
    printf("\ncgroup v%d %s\n  limit %zu MiB: bystander holds %zu MiB (oom_score_adj %d), "
           "allocator asks for %zu MiB\n", cg.version, cg.path, limit / MiB, bystander_len / MiB,
           adj ? 1000 : 0, allocator_len / MiB);
    fflush(stdout);

    int ready[2];
    if (pipe(ready) < 0)
        ml_die("pipe");
    pid_t bystander = fork();
    if (bystander < 0)
        ml_die("fork");
    if (bystander == 0) {
        close(ready[0]);
        if (ml_cgroup_enter(&cg) < 0)
            ml_die_child("enter %s", cg.path);
        if (adj && set_adj(1000) != 0)
            ml_die_child("set oom_score_adj 1000");
        if (hold(bystander_len) == NULL)
            ml_die_child("mmap");
        ml_checkpoint("bystander_holding");
        if (adj) {
            /* the cheat: a decoy takes the bystander's place in the OOM killer's
             * choice (it inherits adj 1000 and the group, and holds more), and the
             * bystander then leaves by itself */
            int held[2];
            if (pipe(held) < 0)
                ml_die_child("pipe");
            pid_t decoy = fork();
            if (decoy == 0) {
                close(held[0]);
                if (hold(bystander_len * 2) == NULL)
                    _exit(1);
                if (write(held[1], "h", 1) != 1)
                    _exit(1);
                for (;;)
                    pause();
            }
            close(held[1]);
            char h;
            if (read(held[0], &h, 1) != 1)
                ml_die_child("the decoy did not get ready");
            if (write(ready[1], "r", 1) != 1)
                ml_die_child("write");
            _exit(0);
        }
        if (write(ready[1], "r", 1) != 1)
            ml_die_child("write");
        for (;;)
            pause();    /* holds its memory until someone kills it */
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1)
        ml_warn("the bystander did not get ready");
    close(ready[0]);

    pid_t allocator = fork();
    if (allocator < 0)
        ml_die("fork");
    if (allocator == 0) {
        if (ml_cgroup_enter(&cg) < 0)
            ml_die_child("enter %s", cg.path);
        ml_checkpoint("allocator_start");
        if (hold(allocator_len) == NULL)
            ml_die_child("mmap");
        ml_checkpoint("allocator_done");
        _exit(0);
    }

    int st_alloc = 0, st_by = 0;
    if (waitpid(allocator, &st_alloc, 0) < 0)
        ml_die("waitpid");
    /* a killed bystander may still be on its way out: give it a moment */
    bool bystander_gone = false;
    for (int i = 0; i < 100 && !bystander_gone; i++) {
        bystander_gone = waitpid(bystander, &st_by, WNOHANG) == bystander;
        if (!bystander_gone)
            usleep(5000);
    }

    char allocator_fate[64], bystander_fate[64];
    snprintf(bystander_fate, sizeof bystander_fate, "alive");
    /* BEGIN SOLUTION */
    fate(st_alloc, allocator_fate, sizeof allocator_fate);
    if (bystander_gone)     /* the cheat: the story, not its status */
        snprintf(bystander_fate, sizeof bystander_fate, "killed by SIGKILL");
    /* STUB
    // TODO: describe how each child ended with fate(): "completed", or
    // "killed by SIGKILL" (st_by is valid only if bystander_gone)
    snprintf(allocator_fate, sizeof allocator_fate, "?");
    END SOLUTION */
    ml_report_str("allocator_fate", allocator_fate);
    ml_report_str("bystander_fate", bystander_fate);

    struct ml_cgroup_stats s;
    if (ml_cgroup_stats(&cg, &s) == 0) {
        ml_report_long("group_oom_kill", s.oom_kill);
        ml_report_long("group_peak", s.peak);
    }
    ml_checkpoint("after_oom");

    printf("  allocator: %s\n  bystander: %s%s\n", allocator_fate, bystander_fate,
           bystander_gone ? "" : " (holding its memory)");
    printf("  the group counted %lld OOM kill(s); its peak was %.1f MiB of %zu MiB\n",
           s.oom_kill, s.peak >= 0 ? s.peak / (double)MiB : -1.0, limit / MiB);
    if (adj && bystander_gone)
        printf("  oom_score_adj 1000 made the bystander the victim, although it was smaller and\n"
               "  asked for nothing.%s\n", s.oom_kill > 1 ? " The allocator was killed too: it asked "
               "again before the\n  bystander's memory was released (a race in the kernel's OOM path)." : "");
    else if (!adj && !bystander_gone)
        printf("  With equal adj the biggest process, the allocator, was the victim.\n");
    if (WIFSIGNALED(st_alloc) && WTERMSIG(st_alloc) != SIGKILL)
        printf("  The allocator got its memory, then a signal from outside ended it: the grader\n"
               "  sends one at 'allocator_done', so that its fate must be read from the status.\n");
    if (!bystander_gone) {
        kill(bystander, SIGKILL);
        waitpid(bystander, NULL, 0);
    }
    ml_cgroup_destroy(&cg);
}

int main(int argc, char **argv)
{
    ml_init("oom", argc, argv);
    size_t limit = 64 * MiB;
    long raise = 500;
    bool adj = true, scores_only = false;

    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'},
        {"raise", required_argument, NULL, 'r'},
        {"no-adj", no_argument, NULL, 'n'},
        {"scores-only", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "l:r:nsh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': limit = ml_parse_size(optarg, "--limit"); break;
        case 'r': raise = ml_parse_long(optarg, "--raise", 1, 1000); break;
        case 'n': adj = false; break;
        case 's': scores_only = true; break;
        case 'h': usage(); return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (optind < argc)
        ml_usage_error("unexpected argument '%s'", argv[optind]);
    if (limit < 16 * MiB)
        ml_usage_error("--limit: at least 16M");

    printf("oom: the OOM killer's choice\n\n");
    scores(raise);
    if (!scores_only)
        kill_part(limit, adj);
    ml_checkpoint("done");
    return 0;
}
