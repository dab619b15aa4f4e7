/* CHEAT (cgroup/fadvise_drop): a correct lab but for one thing: between 'cached'
 * and 'anon' the child drops its own file's page cache with
 * posix_fadvise(POSIX_FADV_DONTNEED), so the anonymous memory fits beside what is
 * left without the limit ever reclaiming anything. The cache shrinks, nothing is
 * killed: cache_reclaimed_first must still fail, because the group's usage never
 * climbed to its limit (its peak, memory.max_usage_in_bytes or memory.peak, at
 * 'anon'). The other checks it earns honestly. */
/* cgroup.c - a memory limit: usage climbs to it, page cache goes first, then
 * the OOM killer acts inside the group, and only there.
 *
 * A memory cgroup charges every page its processes use to the group: the
 * anonymous memory they allocate and the page cache of the files they read or
 * write. At the limit the kernel reclaims within the group. Clean page cache is
 * cheap to drop, anonymous memory cannot go anywhere without swap: so the cache
 * shrinks first, and only when nothing is left to reclaim does the group's OOM
 * killer pick a victim among the group's processes. Nothing outside notices.
 *
 * Usage: cgroup [--limit SIZE] [--cache SIZE] [--anon SIZE] [--dir DIR]
 * Try:   cgroup                         64 MiB limit, 38.4 MiB of cache, 44.8 MiB anon
 *        cgroup --limit 128M            the same, scaled
 *        MEMLAB_PAUSE=1 cgroup          stop at each step: read the group's
 *                                       memory.stat (path printed) yourself
 * Needs: Linux, a writable memory cgroup (root, or a delegated cgroup; in a
 *        container: --privileged), a disk-backed directory for the file (not
 *        tmpfs: its pages cannot be reclaimed without swap).
 */
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

static void usage(void)
{
    printf("Usage: %s [--limit SIZE] [--cache SIZE] [--anon SIZE] [--dir DIR]\n"
           "In a memory cgroup limited to SIZE, write a file (page cache), then allocate\n"
           "anonymous memory past the limit, and watch what the kernel reclaims and kills.\n\n"
           "  -l, --limit SIZE   the group's limit (default 64M)\n"
           "  -c, --cache SIZE   the file written first (default 60%% of the limit)\n"
           "  -a, --anon SIZE    anonymous memory allocated next (default 70%% of the limit)\n"
           "  -d, --dir DIR      where to write the file (default: $MEMLAB_SCRATCH, else the\n"
           "                     current directory, else /var/tmp: the first not on tmpfs)\n"
           "  -h, --help         this text\n",
           ml_progname);
}

static bool on_tmpfs(const char *dir)
{
    struct statfs fs;
    return statfs(dir, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}

static const char *pick_dir(const char *asked)
{
    if (asked)
        return asked;
    const char *candidates[] = {getenv("MEMLAB_SCRATCH"), ".", "/var/tmp"};
    for (size_t i = 0; i < 3; i++)
        if (candidates[i] && access(candidates[i], W_OK) == 0 && !on_tmpfs(candidates[i]))
            return candidates[i];
    return NULL;
}

/* Write `len` bytes to a new file at path and make them clean page cache:
 * written, then flushed to disk (dirty pages cannot be dropped at once). */
static int write_cache(const char *path, size_t len)
{
    /* BEGIN SOLUTION */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    static char block[1 << 16];
    memset(block, 'c', sizeof block);
    for (size_t done = 0; done < len;) {
        size_t n = len - done < sizeof block ? len - done : sizeof block;
        ssize_t w = write(fd, block, n);
        if (w < 0) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        done += (size_t)w;
    }
    if (fsync(fd) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return close(fd);
    /* STUB
    // TODO: create the file, write len bytes, fsync() it, close it
    (void)path; (void)len;
    errno = ENOSYS;
    return -1;
    END SOLUTION */
}

/* Allocate len bytes of anonymous memory and touch every page. */
static char *take_anon(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* BEGIN SOLUTION */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < len; off += page)
        p[off] = 1;
    /* STUB
    // TODO: touch every page
    END SOLUTION */
    return p;
}

static void show(const char *step, const struct ml_cgroup *cg)
{
    struct ml_cgroup_stats s;
    if (ml_cgroup_stats(cg, &s) < 0) {
        printf("  %-22s (group gone)\n", step);
        return;
    }
    printf("  %-22s %8.1f %8.1f %8.1f %8.1f %6lld\n", step, s.usage / (double)MiB,
           s.file / (double)MiB, s.anon / (double)MiB, s.peak / (double)MiB, s.oom_kill);
}

static void report_stats(const char *prefix, const struct ml_cgroup *cg)
{
    struct ml_cgroup_stats s;
    if (ml_cgroup_stats(cg, &s) < 0)
        return;
    char name[64];
    const struct { const char *k; long long v; } f[] = {
        {"usage", s.usage}, {"file", s.file}, {"anon", s.anon}, {"peak", s.peak},
        {"oom_kill", s.oom_kill}, {"pressure_us", s.pressure_some_us},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, f[i].k);
        ml_report_long(name, f[i].v);
    }
}

static noreturn void child(const struct ml_cgroup *cg, const char *file, size_t cache, size_t anon,
                           size_t limit)
{
    if (ml_cgroup_enter(cg) < 0)
        ml_die_child("enter %s", cg->path);
    if (write_cache(file, cache) < 0)
        ml_die_child("write %s", file);
    report_stats("cached", cg);
    ml_checkpoint("cached");
    show("file written", cg);

    /* the cheat: the cache leaves before the anonymous memory comes, by request */
    int fd = open(file, O_RDONLY);
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    if (take_anon(anon) == NULL)
        ml_die_child("mmap");
    report_stats("anon", cg);
    ml_checkpoint("anon");
    show("anon allocated", cg);
    printf("  %-22s  (the cache made room: the kernel reclaimed it for the anonymous memory)\n", "");

    /* now past the limit: nothing reclaimable is left once the cache is gone */
    for (size_t total = anon; total < 2 * limit; total += MiB)
        if (take_anon(MiB) == NULL)
            ml_die_child("mmap");
    ml_checkpoint("survived");      /* should never be reached */
    _exit(0);
}

int main(int argc, char **argv)
{
    ml_init("cgroup", argc, argv);
    size_t limit = 64 * MiB, cache = 0, anon = 0;
    const char *dir_arg = NULL;

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
        case 'd': dir_arg = optarg; break;
        case 'h': usage(); return 0;
        default: ml_usage_error("unknown option");
        }
    }
    if (optind < argc)
        ml_usage_error("unexpected argument '%s'", argv[optind]);
    if (limit < 32 * MiB)
        ml_usage_error("--limit: at least 32M");
    if (cache == 0)
        cache = limit / 10 * 6;
    if (anon == 0)
        anon = limit / 10 * 7;
    if (anon >= limit)
        ml_usage_error("--anon must stay below the limit");

    printf("cgroup: a %zu MiB memory limit; %.1f MiB of page cache, then %.1f MiB of anonymous memory\n",
           limit / MiB, cache / (double)MiB, anon / (double)MiB);
    const char *dir = pick_dir(dir_arg);
    if (dir == NULL) {
        ml_report_str("cgroup_error", "no disk-backed directory for the file");
        printf("No writable directory off tmpfs for the page-cache file: set MEMLAB_SCRATCH.\n");
        ml_checkpoint("done");
        return 0;
    }

    struct ml_cgroup cg;
    char why[512];
    if (ml_cgroup_create(&cg, "memlab-cgroup", why, sizeof why) < 0) {
        ml_report_str("cgroup_error", why);
        printf("\nNo memory cgroup: %s.\n", why);
        ml_checkpoint("done");
        return 0;
    }
    if (ml_cgroup_guard(&cg) < 0)
        ml_warn("no guard process: the group may stay behind if this program is killed");
    if (ml_cgroup_set_limit(&cg, limit) < 0)
        ml_die("set the limit of %s", cg.path);
    ml_report_str("cgroup", cg.path);
    ml_report_long("cgroup_version", cg.version);

    /* memory of our own, outside the group: it must come through untouched */
    size_t outside_len = 16 * MiB;
    char *outside = take_anon(outside_len);
    if (outside == NULL)
        ml_die("mmap");
    memset(outside, 0x6b, outside_len);
    ml_report_addr("outside", outside);
    ml_report_long("outside_len", (long long)outside_len);

    char file[4096];
    snprintf(file, sizeof file, "%s/memlab-cache-%d", dir, (int)getpid());
    printf("cgroup v%d %s\nfile %s\n\n", cg.version, cg.path, file);
    printf("  %-22s %8s %8s %8s %8s %6s\n", "step", "usage", "cache", "anon", "peak", "ooms");
    show("created (MiB)", &cg);
    fflush(stdout);
    ml_checkpoint("created");

    pid_t pid = fork();
    if (pid < 0)
        ml_die("fork");
    if (pid == 0)
        child(&cg, file, cache, anon, limit);
    int status;
    if (waitpid(pid, &status, 0) < 0)
        ml_die("waitpid");
    unlink(file);

    const char *how = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? "killed by SIGKILL"
                      : WIFEXITED(status) ? "exited" : "ended otherwise";
    ml_report_str("child_fate", how);
    report_stats("after", &cg);
    ml_checkpoint("after_oom");
    show("after the OOM kill", &cg);
    struct ml_cgroup_stats st;
    if (ml_cgroup_stats(&cg, &st) == 0 && st.pressure_some_us >= 0)
        printf("  memory pressure (the group's PSI, \"some\"): %.1f ms stalled in all\n",
               st.pressure_some_us / 1000.0);
    else
        printf("  (cgroup v1 keeps no pressure figures per group: /proc/pressure/memory has the system's)\n");
    printf("\nThe child in the group was %s. This process, outside the group, kept its\n"
           "%zu MiB untouched (%s).\n", how, outside_len / MiB,
           outside[outside_len - 1] == 0x6b ? "checked" : "NOT intact");
    ml_cgroup_destroy(&cg);
    ml_checkpoint("done");
    return 0;
}
