/* memlab.h - the helper library every lab links.
 *
 * Four small families, one job each:
 *   error.c   ml_die()/ml_warn(): messages that name the failing call and errno
 *   args.c    ml_parse_size()/..._fraction()/..._long(): option values, with the
 *             option named in every error
 *   procfs.c  parsers for /proc/<pid>/{stat,status,smaps_rollup,maps}; none of
 *             them calls malloc, so measuring never disturbs the heap measured
 *   usage.c   getrusage() and /proc snapshots, and the differences between two
 *   cgroup.c  a memory cgroup of the lab's own, on cgroup v1 or v2
 *   report.c  the lab's side of the grader contract (docs/contract.md): figures
 *             and checkpoints, sent on a channel apart from stdout
 *
 * Labs are compiled with -D_GNU_SOURCE -std=gnu11 (see the Makefile).
 */
#ifndef MEMLAB_H
#define MEMLAB_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>
#include <sys/types.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* ---- error.c -------------------------------------------------------- */

/* The program name used as the prefix of every message (set by ml_init). */
extern const char *ml_progname;

/* Print "prog: <message>: <ERRNO> <strerror>" (errno part only when errno != 0)
 * to stderr and exit(1). Use ml_die_child() in a forked child: it calls _exit()
 * so that the parent's stdio buffers are not flushed twice. */
noreturn void ml_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void ml_die_child(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same message, but the program goes on. */
void ml_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A bad command line: print the message and "try --help", exit(2). */
noreturn void ml_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The symbolic name of an errno value ("ENOMEM"), or "E?" when unknown. */
const char *ml_errno_name(int err);

/* ---- args.c --------------------------------------------------------- */

/* "4096", "64K", "64KiB", "256M", "1G" (binary units). Any error exits with a
 * message that names `what` (e.g. "--size"). Zero is refused. */
size_t ml_parse_size(const char *arg, const char *what);
/* A number in [0, 1], e.g. "0.25". */
double ml_parse_fraction(const char *arg, const char *what);
/* A decimal (or 0x hex) integer in [min, max]. */
long ml_parse_long(const char *arg, const char *what, long min, long max);
/* The same checks without exiting: 0 on success, -1 with *err set to a reason. */
int ml_try_parse_size(const char *arg, size_t *out, const char **err);
int ml_try_parse_long(const char *arg, long min, long max, long *out, const char **err);

/* ---- procfs.c ------------------------------------------------------- */

/* Read a whole /proc file into buf (NUL-terminated). Returns the length, or -1
 * with errno set. A file longer than size-1 is cut and errno is EFBIG. */
ssize_t ml_read_file(const char *path, char *buf, size_t size);

struct ml_stat {                /* /proc/<pid>/stat, the fields labs use */
    char state;                 /* R, S, D, T, t, Z, ... */
    pid_t ppid;
    unsigned long minflt, cminflt, majflt, cmajflt;
    unsigned long long vsize;   /* bytes */
    long rss_pages;
};
int ml_parse_stat(const char *text, struct ml_stat *out);   /* 0, or -1 if malformed */
int ml_read_stat(pid_t pid, struct ml_stat *out);           /* pid 0: this process */

struct ml_status {              /* /proc/<pid>/status, in kB; -1 when absent */
    long vm_size_kb, vm_rss_kb, vm_hwm_kb, rss_anon_kb, rss_file_kb, rss_shmem_kb;
    long vm_data_kb, vm_stk_kb, vm_pte_kb;
};
int ml_parse_status(const char *text, struct ml_status *out);
int ml_read_status(pid_t pid, struct ml_status *out);

struct ml_rollup {              /* /proc/<pid>/smaps_rollup, in kB; -1 when absent */
    long rss_kb, pss_kb, pss_anon_kb, pss_file_kb;
    long shared_clean_kb, shared_dirty_kb, private_clean_kb, private_dirty_kb;
    long anonymous_kb, anon_huge_kb, swap_kb;
};
int ml_parse_smaps_rollup(const char *text, struct ml_rollup *out);
int ml_read_smaps_rollup(pid_t pid, struct ml_rollup *out);

struct ml_vma {                 /* one line of /proc/<pid>/maps */
    uintptr_t start, end;       /* [start, end) */
    char perms[5];              /* "r-xp" */
    unsigned long long offset;
    unsigned dev_major, dev_minor;
    unsigned long inode;
    char path[PATH_MAX + 16];   /* "" for anonymous; "[heap]", "[stack]", a file
                                   (a whole path, and " (deleted)" after it) */
};
int ml_parse_maps_line(const char *line, struct ml_vma *out);

/* Walk /proc/<pid>/maps one VMA at a time, with no allocation. */
struct ml_maps_iter {
    int fd;
    size_t len, pos;
    bool eof;
    char buf[8192];
};
int ml_maps_open(struct ml_maps_iter *it, pid_t pid);       /* 0, or -1 (errno) */
int ml_maps_next(struct ml_maps_iter *it, struct ml_vma *out); /* 1 got one, 0 end, -1 error */
void ml_maps_close(struct ml_maps_iter *it);
/* The VMA holding addr: 1 found, 0 not mapped, -1 error. */
int ml_maps_find(pid_t pid, uintptr_t addr, struct ml_vma *out);

/* ---- usage.c -------------------------------------------------------- */

struct ml_usage {               /* getrusage(RUSAGE_SELF) */
    long minflt, majflt, maxrss_kb;
};
void ml_usage_now(struct ml_usage *u);

/* Everything a lab usually wants to know about itself at one moment. */
struct ml_snapshot {
    struct ml_usage ru;
    struct ml_status st;
    struct ml_rollup ro;
};
void ml_snapshot_now(struct ml_snapshot *s);   /* dies if /proc is unreadable */

/* ---- cgroup.c: a memory cgroup of the lab's own (v1 or v2) ------------ */

struct ml_cgroup {
    int version;                /* 1 or 2: the hierarchy holding the memory controller */
    char base[3072];            /* the cgroup it was created under (our own) */
    char path[3200];            /* the group itself: <base>/<name>-<pid> */
    int guard_fd;               /* the guard's pipe, or -1 */
    pid_t guard_pid;
};

struct ml_cgroup_stats {        /* bytes or counts; -1 where the kernel does not tell */
    long long limit;            /* v1 memory.limit_in_bytes, v2 memory.max */
    long long usage;            /* v1 memory.usage_in_bytes, v2 memory.current */
    long long peak;             /* v1 memory.max_usage_in_bytes, v2 memory.peak */
    long long file, anon;       /* page cache and anonymous memory charged (memory.stat) */
    long long oom_kill;         /* v1 memory.oom_control, v2 memory.events: processes killed */
    long long pressure_some_us; /* v2 memory.pressure "some" total (microseconds) */
};

/* Create <our memory cgroup>/<name>-<pid>. On failure returns -1 with a
 * sentence in `why` ("cannot create the cgroup ...: Permission denied (needs root ...)"). */
int ml_cgroup_create(struct ml_cgroup *cg, const char *name, char *why, size_t whylen);
int ml_cgroup_set_limit(const struct ml_cgroup *cg, size_t bytes);  /* memory (+swap) limit */
int ml_cgroup_enter(const struct ml_cgroup *cg);                    /* move this process in */
int ml_cgroup_add_pid(const struct ml_cgroup *cg, pid_t pid);
int ml_cgroup_stats(const struct ml_cgroup *cg, struct ml_cgroup_stats *s);
/* Start a guard process that removes the group if this process dies first. */
int ml_cgroup_guard(struct ml_cgroup *cg);
/* Kill whatever is left in the group, remove it, stop the guard. */
void ml_cgroup_destroy(struct ml_cgroup *cg);

/* ---- report.c: the grader contract (docs/contract.md) --------------- */

/* Call first in main(): names the program for messages, gives stdout a fixed
 * static line buffer (so stdio never mallocs and placement experiments do not
 * depend on whether stdout is a pipe or a terminal), and connects to the grader
 * when MEMLAB_FD is set. */
void ml_init(const char *lab, int argc, char **argv);
/* true when a grader listens. */
bool ml_graded(void);
/* Figures: a name ([a-z0-9_.], at most 64 chars) and a value. Silent when no
 * grader listens: the human output is the lab's own printf()s. */
void ml_report_long(const char *name, long long value);
void ml_report_double(const char *name, double value);
void ml_report_addr(const char *name, const void *addr);
void ml_report_str(const char *name, const char *value);
/* A named point where the grader inspects this process; returns when the grader
 * lets it go. Without a grader: nothing, unless MEMLAB_PAUSE=1 is set, which
 * stops here so that you can look at /proc/<pid>/ yourself. */
void ml_checkpoint(const char *name);

#endif
