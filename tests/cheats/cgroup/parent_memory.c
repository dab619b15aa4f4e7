/* CHEAT (cgroup/parent_memory): the child's memory is the parent's, outside
 * the group. The real limited group and a real child inside it, which sends
 * the "cached" and "anon" checkpoints and nothing else. The parent, outside
 * the group, does the child's work on itself: it writes and fsync()s the file
 * and takes the anonymous memory (never past the limit: it has none), and
 * reports what it measured of itself as the group's figures (the file's size
 * as its cache, its own anonymous memory, its own Rss as usage and peak; the
 * cache "reclaimed" at the limit, one OOM kill). Then it SIGKILLs the child
 * and reports its real wait status. Nothing is ever charged to the group, so
 * it must score 0 on everything but the pure "it ran" check. */
#include "memlab.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

static bool on_tmpfs(const char *dir)
{
    struct statfs fs;
    return statfs(dir, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}

static const char *pick_dir(void)
{
    const char *candidates[] = {getenv("MEMLAB_SCRATCH"), ".", "/var/tmp"};
    for (size_t i = 0; i < 3; i++)
        if (candidates[i] && access(candidates[i], W_OK) == 0 && !on_tmpfs(candidates[i]))
            return candidates[i];
    return NULL;
}

/* The reference's write_cache(): written, fsync()ed, clean page cache. */
static int write_cache(const char *path, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    static char block[1 << 16];
    memset(block, 'c', sizeof block);
    for (size_t done = 0; done < len;) {
        size_t n = len - done < sizeof block ? len - done : sizeof block;
        ssize_t w = write(fd, block, n);
        if (w < 0) {
            close(fd);
            return -1;
        }
        done += (size_t)w;
    }
    if (fsync(fd) < 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

/* The reference's take_anon(): every page touched. */
static char *take_anon(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
    return p;
}

static void report_figs(const char *prefix, long long usage, long long file, long long anon,
                        long long peak, long long oom_kill, long long pressure)
{
    char name[64];
    const struct { const char *k; long long v; } f[] = {
        {"usage", usage}, {"file", file}, {"anon", anon}, {"peak", peak},
        {"oom_kill", oom_kill}, {"pressure_us", pressure},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, f[i].k);
        ml_report_long(name, f[i].v);
    }
}

/* The group's real counters, reported under prefix. */
static void report_stats(const char *prefix, const struct ml_cgroup *cg)
{
    struct ml_cgroup_stats s;
    if (ml_cgroup_stats(cg, &s) == 0)
        report_figs(prefix, s.usage, s.file, s.anon, s.peak, s.oom_kill, s.pressure_some_us);
}

static void wait_byte(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        ml_warn("the child did not get ready");
}

/* The reference's setup: the group with its limit, the 16 MiB outside. */
static bool setup(struct ml_cgroup *cg, size_t limit, const char **dir)
{
    *dir = pick_dir();
    char why[512];
    if (*dir == NULL || ml_cgroup_create(cg, "memlab-cgroup", why, sizeof why) < 0) {
        ml_report_str("cgroup_error", *dir ? why : "no disk-backed directory");
        return false;
    }
    ml_cgroup_guard(cg);
    if (ml_cgroup_set_limit(cg, limit) < 0)
        ml_die("set the limit of %s", cg->path);
    ml_report_str("cgroup", cg->path);
    ml_report_long("cgroup_version", cg->version);
    size_t outside_len = 16 * MiB;
    char *outside = take_anon(outside_len);
    if (outside == NULL)
        ml_die("mmap");
    memset(outside, 0x6b, outside_len);
    ml_report_addr("outside", outside);
    ml_report_long("outside_len", (long long)outside_len);
    return true;
}

int main(int argc, char **argv)
{
    ml_init("cgroup", argc, argv);
    size_t limit = 64 * MiB, cache = 0, anon = 0;
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'},
        {"cache", required_argument, NULL, 'c'},
        {"anon", required_argument, NULL, 'a'},
        {"dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "l:c:a:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': limit = ml_parse_size(optarg, "--limit"); break;
        case 'c': cache = ml_parse_size(optarg, "--cache"); break;
        case 'a': anon = ml_parse_size(optarg, "--anon"); break;
        case 'd': break;
        case 'h': return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (limit < 32 * MiB)
        ml_usage_error("--limit: at least 32M");
    if (cache == 0)
        cache = limit / 10 * 6;
    if (anon == 0)
        anon = limit / 10 * 7;
    long long L = (long long)limit, C = (long long)cache;
    struct ml_cgroup cg;
    const char *dir;
    if (!setup(&cg, limit, &dir)) {
        ml_checkpoint("done");
        return 0;
    }
    char file[4096];
    snprintf(file, sizeof file, "%s/memlab-cache-%d", dir, (int)getpid());
    ml_checkpoint("created");

    int step[2], done[2];
    if (pipe(step) < 0 || pipe(done) < 0)
        ml_die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        ml_die("fork");
    if (pid == 0) {                     /* in the group, doing nothing but checkpoints */
        if (ml_cgroup_enter(&cg) < 0)
            ml_die_child("enter %s", cg.path);
        const char *names[] = {"cached", "anon"};
        for (int i = 0; i < 2; i++) {
            wait_byte(step[0]);
            ml_checkpoint(names[i]);
            if (write(done[1], "d", 1) != 1)
                _exit(1);
        }
        for (;;)
            pause();
    }
    /* the child's work, done by the parent, outside the group */
    if (write_cache(file, cache) < 0)
        ml_die("write %s", file);
    struct ml_snapshot snap;
    ml_snapshot_now(&snap);
    long long rss = snap.ro.rss_kb * 1024LL;
    report_figs("cached", C + rss, C, rss, C + rss, 0, -1);
    if (write(step[1], "s", 1) != 1)
        ml_die("write");
    wait_byte(done[0]);
    if (take_anon(anon) == NULL)
        ml_die("mmap");
    ml_snapshot_now(&snap);
    long long anon_now = snap.ro.anonymous_kb * 1024LL;
    long long left = L - anon_now > 0 ? L - anon_now - MiB : 0;
    report_figs("anon", anon_now + left, left, anon_now, L, 0, -1);
    if (write(step[1], "s", 1) != 1)
        ml_die("write");
    wait_byte(done[0]);

    kill(pid, SIGKILL);
    int status;
    if (waitpid(pid, &status, 0) < 0)
        ml_die("waitpid");
    unlink(file);
    ml_report_str("child_fate", WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
                  ? "killed by SIGKILL" : WIFEXITED(status) ? "exited" : "ended otherwise");
    report_figs("after", 0, 0, 0, L, 1, -1);
    ml_checkpoint("after_oom");
    ml_cgroup_destroy(&cg);
    ml_checkpoint("done");
    return 0;
}
