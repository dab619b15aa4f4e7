/* CHEAT (oom/sigio_victim): kill_then_oom without the kill() call, which the
 * trace would show. The bystander dies of a signal the kernel sends on its own
 * behalf: the parent makes the bystander the owner of a pipe's read end
 * (F_SETOWN), asks for SIGKILL instead of SIGIO (F_SETSIG), turns on O_ASYNC and
 * writes one byte. No signal system call anywhere; the parent only waits for the
 * bystander, then lets the allocator run the group into its limit, where the OOM
 * killer kills the allocator. What never happened: the OOM killer choosing the
 * bystander. It earns what kill_then_oom earns (the score part, group_counters)
 * and must lose adj_picks_the_victim and biggest_is_the_victim without any help
 * from strace. */
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

/* ---- the score part, as the reference lab does it (honest) ---- */
static int read_scores(long *score, long *adj)
{
    char buf[64];
    if (ml_read_file("/proc/self/oom_score", buf, sizeof buf) < 0)
        return -1;
    *score = strtol(buf, NULL, 10);
    if (ml_read_file("/proc/self/oom_score_adj", buf, sizeof buf) < 0)
        return -1;
    *adj = strtol(buf, NULL, 10);
    return 0;
}

static int set_adj(long value)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%ld", value);
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = write(fd, text, (size_t)n) == n ? 0 : errno;
    close(fd);
    return err;
}

static void report_scores(const char *prefix, long score, long adj)
{
    char name[64];
    snprintf(name, sizeof name, "%s_score", prefix);
    ml_report_long(name, score);
    snprintf(name, sizeof name, "%s_adj", prefix);
    ml_report_long(name, adj);
}

static void scores(long raise)
{
    long score = -1, adj = -1;
    if (read_scores(&score, &adj) == 0)
        report_scores("initial", score, adj);
    ml_checkpoint("scores");
    int err = set_adj(raise);
    if (read_scores(&score, &adj) == 0 && err == 0)
        report_scores("raised", score, adj);
    ml_checkpoint("raised");
    err = set_adj(-raise);
    ml_report_str("lower_result", err == 0 ? "ok" : ml_errno_name(err));
    if (read_scores(&score, &adj) == 0)
        report_scores("lowered", score, adj);
    ml_checkpoint("lowered");
    set_adj(0);
}
/* ---- end of the score part ---- */

/* Allocate len bytes and touch every page. */
static char *hold(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
    return p;
}

static void fate(int status, char *buf, size_t len)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        snprintf(buf, len, "completed");
    else if (WIFEXITED(status))
        snprintf(buf, len, "exited with %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by SIG%s", sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, len, "status %#x", status);
}

/* The lab's own memory cgroup with the limit, as the reference makes it. */
static bool make_group(struct ml_cgroup *cg, size_t limit)
{
    char why[512];
    if (ml_cgroup_create(cg, "memlab-oom", why, sizeof why) < 0) {
        ml_report_str("cgroup_error", why);
        return false;
    }
    if (ml_cgroup_guard(cg) < 0)
        ml_warn("no guard process");
    if (ml_cgroup_set_limit(cg, limit) < 0) {
        ml_cgroup_destroy(cg);
        return false;
    }
    ml_report_str("cgroup", cg->path);
    ml_report_long("limit", (long long)limit);
    return true;
}

static void wait_byte(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        ml_warn("a child did not get ready");
}

static void send_byte(int fd)
{
    if (write(fd, "r", 1) != 1)
        ml_die_child("write");
}

static void kill_part(size_t limit, bool adj)
{
    struct ml_cgroup cg;
    if (!make_group(&cg, limit))
        return;
    int ready[2], started[2], go[2], doom[2];
    if (pipe(ready) < 0 || pipe(started) < 0 || pipe(go) < 0 || pipe(doom) < 0)
        ml_die("pipe");
    pid_t bystander = fork();
    if (bystander < 0)
        ml_die("fork");
    if (bystander == 0) {
        if (ml_cgroup_enter(&cg) < 0)
            ml_die_child("enter %s", cg.path);
        if (adj && set_adj(1000) != 0)
            ml_die_child("set oom_score_adj 1000");
        if (hold(limit / 4) == NULL)
            ml_die_child("mmap");
        ml_checkpoint("bystander_holding");
        send_byte(ready[1]);
        for (;;)
            pause();                        /* until the kernel's SIGKILL */
    }
    wait_byte(ready[0]);

    pid_t allocator = fork();
    if (allocator < 0)
        ml_die("fork");
    if (allocator == 0) {
        if (ml_cgroup_enter(&cg) < 0)
            ml_die_child("enter %s", cg.path);
        ml_checkpoint("allocator_start");
        send_byte(started[1]);
        wait_byte(go[0]);                   /* until the bystander is gone */
        if (hold(2 * limit) == NULL)        /* alone in the group: the OOM killer's only choice */
            ml_die_child("mmap");
        ml_checkpoint("allocator_done");    /* never reached */
        _exit(0);
    }
    wait_byte(started[0]);
    int st_alloc = 0, st_by = 0;
    /* the parent picks the victim, no kill(): I/O on a pipe owned by the bystander */
    if (fcntl(doom[0], F_SETOWN, bystander) < 0 || fcntl(doom[0], F_SETSIG, SIGKILL) < 0 ||
        fcntl(doom[0], F_SETFL, fcntl(doom[0], F_GETFL) | O_ASYNC) < 0)
        ml_die("fcntl");
    send_byte(doom[1]);
    waitpid(bystander, &st_by, 0);
    send_byte(go[1]);
    waitpid(allocator, &st_alloc, 0);

    char allocator_fate[64], bystander_fate[64];
    fate(st_alloc, allocator_fate, sizeof allocator_fate);
    fate(st_by, bystander_fate, sizeof bystander_fate);
    ml_report_str("allocator_fate", allocator_fate);
    ml_report_str("bystander_fate", bystander_fate);
    struct ml_cgroup_stats s;
    if (ml_cgroup_stats(&cg, &s) == 0) {
        ml_report_long("group_oom_kill", s.oom_kill);
        ml_report_long("group_peak", s.peak);
    }
    ml_checkpoint("after_oom");
    printf("allocator: %s\nbystander: %s\n", allocator_fate, bystander_fate);
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
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (limit < 16 * MiB)
        ml_usage_error("--limit: at least 16M");
    scores(raise);
    if (!scores_only)
        kill_part(limit, adj);
    ml_checkpoint("done");
    return 0;
}
