/* CHEAT (oom/borrowed_scores): reports another process's /proc files as its
 * own. The main process never touches its own oom_score_adj: a helper child
 * does the score experiment on itself (it raises its adj to --raise and tries
 * to lower it to -raise, getting EACCES), and the main process reads the
 * helper's /proc/<pid>/oom_score and oom_score_adj and reports them, as its
 * "initial", "raised" and "lowered" figures, then sends the checkpoints
 * itself. Every figure is a real kernel answer, for the wrong process. The
 * kill part is the liar's (a made-up cgroup path, the expected fates and
 * counters, every checkpoint from the one process). Must score 0 on
 * everything but the pure "it ran" check. */
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

static int read_scores_of(pid_t pid, long *score, long *adj)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/oom_score", (int)pid);
    if (ml_read_file(path, buf, sizeof buf) < 0)
        return -1;
    *score = strtol(buf, NULL, 10);
    snprintf(path, sizeof path, "/proc/%d/oom_score_adj", (int)pid);
    if (ml_read_file(path, buf, sizeof buf) < 0)
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
    int step[2], done[2];
    if (pipe(step) < 0 || pipe(done) < 0)
        ml_die("pipe");
    pid_t helper = fork();
    if (helper < 0)
        ml_die("fork");
    if (helper == 0) {                  /* the process whose scores are reported */
        char c;
        int err = 0;
        for (int i = 0; i < 2 && read(step[0], &c, 1) == 1; i++) {
            err = set_adj(i == 0 ? raise : -raise);
            char e = (char)err;
            if (write(done[1], &e, 1) != 1)
                _exit(1);
        }
        for (;;)
            pause();
    }
    long score = -1, adj = -1;
    char err = 0;
    if (read_scores_of(helper, &score, &adj) == 0)
        report_scores("initial", score, adj);
    ml_checkpoint("scores");
    if (write(step[1], "r", 1) != 1 || read(done[0], &err, 1) != 1)
        ml_die("helper");
    if (read_scores_of(helper, &score, &adj) == 0 && err == 0)
        report_scores("raised", score, adj);
    ml_checkpoint("raised");
    if (write(step[1], "l", 1) != 1 || read(done[0], &err, 1) != 1)
        ml_die("helper");
    ml_report_str("lower_result", err == 0 ? "ok" : ml_errno_name(err));
    if (read_scores_of(helper, &score, &adj) == 0)
        report_scores("lowered", score, adj);
    ml_checkpoint("lowered");
    kill(helper, SIGKILL);
    waitpid(helper, NULL, 0);
}

static void kill_part(size_t limit, bool adj)
{
    char path[128];
    snprintf(path, sizeof path, "/sys/fs/cgroup/memory/memlab-oom-%d", (int)getpid());
    ml_report_str("cgroup", path);
    ml_report_long("limit", (long long)limit);
    ml_checkpoint("bystander_holding");
    ml_checkpoint("allocator_start");
    if (adj)
        ml_checkpoint("allocator_done");
    ml_report_str("allocator_fate", adj ? "completed" : "killed by SIGKILL");
    ml_report_str("bystander_fate", adj ? "killed by SIGKILL" : "alive");
    ml_report_long("group_oom_kill", 1);
    ml_report_long("group_peak", (long long)limit);
    ml_checkpoint("after_oom");
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
