/* cgroup.c - a memory cgroup of the lab's own, on cgroup v1 or v2.
 *
 * The group is created under the cgroup this process is already in (read from
 * /proc/self/cgroup), so an experiment that exhausts memory exhausts only the
 * group. On v2 a cgroup that holds processes cannot give its children the
 * memory controller ("no internal processes"); the usual remedy, used here, is
 * to move those processes into a leaf "memlab-leaf" first, after which the
 * group's parent serves as the base for every later lab.
 *
 * A guard process (ml_cgroup_guard) removes the group if the lab dies without
 * doing it, even by SIGKILL. */
#include "memlab.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LEAF "memlab-leaf"

static int write_file(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int err = errno;
    close(fd);
    if (n < 0) {
        errno = err;
        return -1;
    }
    return 0;
}

static long long read_ll(const char *dir, const char *file)
{
    char path[PATH_MAX], buf[64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (ml_read_file(path, buf, sizeof buf) < 0)
        return -1;
    if (strncmp(buf, "max", 3) == 0)
        return LLONG_MAX;
    return strtoll(buf, NULL, 10);
}

/* "key value" lines (memory.stat, memory.events, memory.oom_control) */
static long long read_key(const char *dir, const char *file, const char *key)
{
    char path[PATH_MAX], buf[8192];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (ml_read_file(path, buf, sizeof buf) < 0 && errno != EFBIG)
        return -1;
    size_t klen = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return strtoll(line + klen + 1, NULL, 10);
    }
    return -1;
}

/* The directory of this process's memory cgroup, and the hierarchy's version. */
static int own_memory_cgroup(char *dir, size_t size, int *version)
{
    char cg[4096], mi[16384];
    if (ml_read_file("/proc/self/cgroup", cg, sizeof cg) < 0)
        return -1;
    if (ml_read_file("/proc/self/mountinfo", mi, sizeof mi) < 0 && errno != EFBIG)
        return -1;
    /* v1: a line "N:...memory...:/path" and a cgroup mount with option memory */
    const char *v1path = NULL, *v2path = NULL;
    size_t v1len = 0, v2len = 0;
    for (char *line = cg; *line;) {
        char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char *c1 = memchr(line, ':', len);
        char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c1 && c2) {
            size_t clen = (size_t)(c2 - c1 - 1);
            const char *ctrl = c1 + 1;
            bool has_memory = false;
            for (const char *p = ctrl; p < ctrl + clen;) {
                const char *comma = memchr(p, ',', (size_t)(ctrl + clen - p));
                size_t n = comma ? (size_t)(comma - p) : (size_t)(ctrl + clen - p);
                if (n == 6 && strncmp(p, "memory", 6) == 0)
                    has_memory = true;
                p += n + 1;
            }
            if (has_memory) {
                v1path = c2 + 1;
                v1len = (size_t)(line + len - v1path);
            } else if (clen == 0 && c1 == line + 1 && line[0] == '0') {
                v2path = c2 + 1;
                v2len = (size_t)(line + len - v2path);
            }
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    /* find the mount: fields "id parent maj:min root mountpoint opts ... - fstype src superopts" */
    for (char *line = mi; *line;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        char root[PATH_MAX], mnt[PATH_MAX], fstype[32], superopts[512];
        char *dash = strstr(line, " - ");
        if (dash && sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) == 2 &&
            sscanf(dash + 3, "%31s %*s %511s", fstype, superopts) == 2) {
            const char *path = NULL;
            size_t plen = 0;
            int ver = 0;
            if (v1path && strcmp(fstype, "cgroup") == 0) {
                for (char *o = strtok(superopts, ","); o; o = strtok(NULL, ","))
                    if (strcmp(o, "memory") == 0)
                        ver = 1;
                path = v1path;
                plen = v1len;
            } else if (!v1path && v2path && strcmp(fstype, "cgroup2") == 0) {
                ver = 2;
                path = v2path;
                plen = v2len;
            }
            if (ver) {
                /* the cgroup path is relative to the hierarchy; the mount shows `root` of it */
                size_t rlen = strcmp(root, "/") == 0 ? 0 : strlen(root);
                if (rlen && (plen < rlen || strncmp(path, root, rlen) != 0))
                    rlen = 0;   /* not under this mount's root: assume a namespaced view */
                int n = snprintf(dir, size, "%s%.*s", mnt, (int)(plen - rlen), path + rlen);
                if (n < 0 || (size_t)n >= size) {
                    errno = ENAMETOOLONG;
                    return -1;
                }
                size_t dl = strlen(dir);
                if (dl > 1 && dir[dl - 1] == '/')
                    dir[dl - 1] = '\0';
                *version = ver;
                return 0;
            }
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    errno = ENOENT;
    return -1;
}

/* v2: make `base` able to give its children the memory controller. */
static int enable_memory_v2(const char *base, char *why, size_t whylen)
{
    char ctrl[512];
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/cgroup.subtree_control", base);
    if (ml_read_file(path, ctrl, sizeof ctrl) >= 0 && strstr(ctrl, "memory"))
        return 0;
    if (write_file(base, "cgroup.subtree_control", "+memory") == 0)
        return 0;
    if (errno != EBUSY) {
        snprintf(why, whylen, "cannot enable the memory controller in %s: %s", base, strerror(errno));
        return -1;
    }
    /* processes live in base: move them all into a leaf, then try again */
    char leaf[PATH_MAX];
    snprintf(leaf, sizeof leaf, "%s/" LEAF, base);
    if (mkdir(leaf, 0755) < 0 && errno != EEXIST) {
        snprintf(why, whylen, "cannot create %s: %s", leaf, strerror(errno));
        return -1;
    }
    char procs[65536];
    snprintf(path, sizeof path, "%s/cgroup.procs", base);
    for (int round = 0; round < 10; round++) {
        if (ml_read_file(path, procs, sizeof procs) < 0 && errno != EFBIG)
            break;
        if (procs[0] == '\0')
            break;
        for (char *tok = strtok(procs, "\n"); tok; tok = strtok(NULL, "\n"))
            write_file(leaf, "cgroup.procs", tok);   /* a process may be gone: ignore */
    }
    if (write_file(base, "cgroup.subtree_control", "+memory") == 0)
        return 0;
    snprintf(why, whylen, "cannot enable the memory controller in %s (%s): processes there "
             "could not all be moved to %s", base, strerror(errno), LEAF);
    return -1;
}

int ml_cgroup_create(struct ml_cgroup *cg, const char *name, char *why, size_t whylen)
{
    memset(cg, 0, sizeof *cg);
    cg->guard_pid = -1;
    cg->guard_fd = -1;
    char own[sizeof cg->base];
    if (own_memory_cgroup(own, sizeof own, &cg->version) < 0) {
        snprintf(why, whylen, "no memory cgroup controller is mounted for this process");
        return -1;
    }
    /* a leaf made by a previous lab: its parent is the base */
    const char *slash = strrchr(own, '/');
    if (cg->version == 2 && slash && strcmp(slash + 1, LEAF) == 0 && slash != own)
        own[slash - own] = '\0';
    snprintf(cg->base, sizeof cg->base, "%s", own);
    if (cg->version == 2 && enable_memory_v2(cg->base, why, whylen) < 0)
        return -1;
    snprintf(cg->path, sizeof cg->path, "%s/%s-%d", cg->base, name, (int)getpid());
    if (mkdir(cg->path, 0755) < 0) {
        snprintf(why, whylen, "cannot create the cgroup %s: %s%s", cg->path, strerror(errno),
                 errno == EACCES || errno == EROFS || errno == EPERM
                     ? " (needs root, or a cgroup delegated to you; in a container: --privileged)" : "");
        cg->path[0] = '\0';
        return -1;
    }
    return 0;
}

int ml_cgroup_set_limit(const struct ml_cgroup *cg, size_t bytes)
{
    char text[32];
    snprintf(text, sizeof text, "%zu", bytes);
    if (cg->version == 1) {
        if (write_file(cg->path, "memory.limit_in_bytes", text) < 0)
            return -1;
        /* memory+swap too, where the kernel has it: no escape into swap */
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/memory.memsw.limit_in_bytes", cg->path);
        if (access(p, F_OK) == 0 && write_file(cg->path, "memory.memsw.limit_in_bytes", text) < 0)
            return -1;
        return 0;
    }
    if (write_file(cg->path, "memory.max", text) < 0)
        return -1;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/memory.swap.max", cg->path);
    if (access(p, F_OK) == 0)
        write_file(cg->path, "memory.swap.max", "0");
    return 0;
}

int ml_cgroup_add_pid(const struct ml_cgroup *cg, pid_t pid)
{
    char text[32];
    snprintf(text, sizeof text, "%d", (int)pid);
    return write_file(cg->path, "cgroup.procs", text);
}

int ml_cgroup_enter(const struct ml_cgroup *cg)
{
    return ml_cgroup_add_pid(cg, getpid());
}

int ml_cgroup_stats(const struct ml_cgroup *cg, struct ml_cgroup_stats *s)
{
    s->limit = s->usage = s->peak = s->file = s->anon = -1;
    s->oom_kill = s->pressure_some_us = -1;
    if (cg->path[0] == '\0') {
        errno = ENOENT;
        return -1;
    }
    if (cg->version == 1) {
        s->limit = read_ll(cg->path, "memory.limit_in_bytes");
        s->usage = read_ll(cg->path, "memory.usage_in_bytes");
        s->peak = read_ll(cg->path, "memory.max_usage_in_bytes");
        s->file = read_key(cg->path, "memory.stat", "total_cache");
        s->anon = read_key(cg->path, "memory.stat", "total_rss");
        s->oom_kill = read_key(cg->path, "memory.oom_control", "oom_kill");
    } else {
        s->limit = read_ll(cg->path, "memory.max");
        s->usage = read_ll(cg->path, "memory.current");
        s->peak = read_ll(cg->path, "memory.peak");
        s->file = read_key(cg->path, "memory.stat", "file");
        s->anon = read_key(cg->path, "memory.stat", "anon");
        s->oom_kill = read_key(cg->path, "memory.events", "oom_kill");
        char path[PATH_MAX], buf[512];
        snprintf(path, sizeof path, "%s/memory.pressure", cg->path);
        if (ml_read_file(path, buf, sizeof buf) >= 0) {
            char *t = strstr(buf, "total=");
            if (t)
                s->pressure_some_us = strtoll(t + 6, NULL, 10);
        }
    }
    return s->usage < 0 ? -1 : 0;
}

/* Kill every process in the group; true when it is empty afterwards. */
static bool empty_group(const char *dir, int version)
{
    if (version == 2 && write_file(dir, "cgroup.kill", "1") == 0) {
        /* done below by polling */
    }
    char path[PATH_MAX], procs[16384];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    for (int i = 0; i < 200; i++) {
        if (ml_read_file(path, procs, sizeof procs) < 0 && errno != EFBIG)
            return true;    /* gone already */
        if (procs[0] == '\0')
            return true;
        for (char *tok = strtok(procs, "\n"); tok; tok = strtok(NULL, "\n")) {
            pid_t pid = (pid_t)atoi(tok);
            if (pid > 0 && pid != getpid())
                kill(pid, SIGKILL);
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void destroy_dir(const char *dir, int version)
{
    if (dir[0] == '\0')
        return;
    empty_group(dir, version);
    for (int i = 0; i < 200; i++) {    /* rmdir fails while the kernel still sees members */
        if (rmdir(dir) == 0 || errno == ENOENT)
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int ml_cgroup_guard(struct ml_cgroup *cg)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* the guard: wait until the lab closes the pipe (exit, crash, SIGKILL) */
        close(fds[1]);
        prctl(PR_SET_NAME, "memlab-guard", 0, 0, 0);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {                 /* hold none of the lab's output streams */
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        for (int fd = 3; fd < 1024; fd++)
            if (fd != fds[0])
                close(fd);
        char c;
        while (read(fds[0], &c, 1) < 0 && errno == EINTR)
            ;
        (void)parent;
        destroy_dir(cg->path, cg->version);
        _exit(0);
    }
    close(fds[0]);
    cg->guard_fd = fds[1];
    cg->guard_pid = pid;
    return 0;
}

void ml_cgroup_destroy(struct ml_cgroup *cg)
{
    destroy_dir(cg->path, cg->version);
    cg->path[0] = '\0';
    if (cg->guard_fd >= 0) {
        close(cg->guard_fd);
        cg->guard_fd = -1;
    }
    if (cg->guard_pid > 0) {
        waitpid(cg->guard_pid, NULL, 0);
        cg->guard_pid = -1;
    }
}
