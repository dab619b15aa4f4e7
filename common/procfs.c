/* procfs.c - parsers for /proc/<pid>/{stat,status,smaps_rollup,maps}.
 *
 * The parsers take text, so they can be tested on captured or broken input;
 * the readers use open()/read() into caller or stack buffers: nothing here
 * calls malloc(), so a lab that measures its own heap does not move it. */
#include "memlab.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ssize_t ml_read_file(const char *path, char *buf, size_t size)
{
    if (size == 0) {
        errno = EINVAL;
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        if (len == size - 1) {
            char probe;
            ssize_t more = read(fd, &probe, 1);
            buf[len] = '\0';
            close(fd);
            if (more > 0) {
                errno = EFBIG;
                return -1;
            }
            return (ssize_t)len;
        }
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

static void proc_path(char *out, size_t size, pid_t pid, const char *file)
{
    if (pid == 0)
        snprintf(out, size, "/proc/self/%s", file);
    else
        snprintf(out, size, "/proc/%d/%s", (int)pid, file);
}

/* Parse one unsigned decimal field; advances *p past it and one space. */
static int take_ull(const char **p, unsigned long long *out)
{
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = 0;
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    if (*s == ' ')
        s++;
    else if (*s != '\n' && *s != '\0')
        return -1;
    *p = s;
    *out = v;
    return 0;
}

static int take_ll(const char **p, long long *out)
{
    bool neg = (**p == '-');
    if (neg)
        (*p)++;
    unsigned long long v;
    if (take_ull(p, &v) < 0 || v > (unsigned long long)LLONG_MAX)
        return -1;
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

int ml_parse_stat(const char *text, struct ml_stat *out)
{
    /* "pid (comm) S ppid ...": comm may hold spaces and ')', so the fields
     * start after the *last* ')' */
    const char *rp = text ? strrchr(text, ')') : NULL;
    if (rp == NULL || rp[1] != ' ' || rp[2] == '\0' || rp[3] != ' ')
        return -1;
    struct ml_stat st = {0};
    st.state = rp[2];
    const char *p = rp + 4;
    /* fields 4..24: ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
     * cmajflt utime stime cutime cstime priority nice num_threads itrealvalue
     * starttime vsize rss */
    long long f[21];
    for (int i = 0; i < 21; i++)
        if (take_ll(&p, &f[i]) < 0)
            return -1;
    if (f[0] < 0 || f[6] < 0 || f[7] < 0 || f[8] < 0 || f[9] < 0 || f[19] < 0)
        return -1;
    st.ppid = (pid_t)f[0];
    st.minflt = (unsigned long)f[6];
    st.cminflt = (unsigned long)f[7];
    st.majflt = (unsigned long)f[8];
    st.cmajflt = (unsigned long)f[9];
    st.vsize = (unsigned long long)f[19];
    st.rss_pages = (long)f[20];
    *out = st;
    return 0;
}

int ml_read_stat(pid_t pid, struct ml_stat *out)
{
    char path[64], buf[1024];
    proc_path(path, sizeof path, pid, "stat");
    if (ml_read_file(path, buf, sizeof buf) < 0)
        return -1;
    if (ml_parse_stat(buf, out) < 0) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

/* "Key:<spaces>123 kB" lines; fills every listed key found, leaves others -1.
 * A key whose value is not a number makes the whole text malformed. */
struct kb_key {
    const char *key;
    long *dst;
};

static int parse_kb_lines(const char *text, const struct kb_key *keys, size_t nkeys,
                          bool need_kb_unit)
{
    for (size_t i = 0; i < nkeys; i++)
        *keys[i].dst = -1;
    if (text == NULL)
        return -1;
    int found = 0;
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        const char *colon = memchr(line, ':', len);
        if (colon) {
            size_t klen = (size_t)(colon - line);
            for (size_t i = 0; i < nkeys; i++) {
                if (strlen(keys[i].key) != klen || strncmp(line, keys[i].key, klen) != 0)
                    continue;
                const char *v = colon + 1;
                while (v < line + len && (*v == ' ' || *v == '\t'))
                    v++;
                char *end;
                errno = 0;
                long long n = strtoll(v, &end, 10);
                if (end == v || errno == ERANGE || n < 0 || end > line + len)
                    return -1;
                while (end < line + len && *end == ' ')
                    end++;
                if (need_kb_unit && !(line + len - end >= 2 && strncmp(end, "kB", 2) == 0))
                    return -1;
                *keys[i].dst = (long)n;
                found++;
            }
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    return found > 0 ? 0 : -1;
}

int ml_parse_status(const char *text, struct ml_status *out)
{
    struct ml_status s;
    const struct kb_key keys[] = {
        {"VmSize", &s.vm_size_kb}, {"VmRSS", &s.vm_rss_kb}, {"VmHWM", &s.vm_hwm_kb},
        {"RssAnon", &s.rss_anon_kb}, {"RssFile", &s.rss_file_kb},
        {"RssShmem", &s.rss_shmem_kb}, {"VmData", &s.vm_data_kb},
        {"VmStk", &s.vm_stk_kb}, {"VmPTE", &s.vm_pte_kb},
    };
    if (parse_kb_lines(text, keys, sizeof keys / sizeof keys[0], true) < 0)
        return -1;
    *out = s;
    return 0;
}

int ml_read_status(pid_t pid, struct ml_status *out)
{
    char path[64], buf[4096];
    proc_path(path, sizeof path, pid, "status");
    if (ml_read_file(path, buf, sizeof buf) < 0)
        return -1;
    if (ml_parse_status(buf, out) < 0) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

int ml_parse_smaps_rollup(const char *text, struct ml_rollup *out)
{
    struct ml_rollup r;
    const struct kb_key keys[] = {
        {"Rss", &r.rss_kb}, {"Pss", &r.pss_kb}, {"Pss_Anon", &r.pss_anon_kb},
        {"Pss_File", &r.pss_file_kb}, {"Shared_Clean", &r.shared_clean_kb},
        {"Shared_Dirty", &r.shared_dirty_kb}, {"Private_Clean", &r.private_clean_kb},
        {"Private_Dirty", &r.private_dirty_kb}, {"Anonymous", &r.anonymous_kb},
        {"AnonHugePages", &r.anon_huge_kb}, {"Swap", &r.swap_kb},
    };
    if (parse_kb_lines(text, keys, sizeof keys / sizeof keys[0], true) < 0)
        return -1;
    if (r.rss_kb < 0 || r.pss_kb < 0)   /* a rollup without these is not one */
        return -1;
    *out = r;
    return 0;
}

int ml_read_smaps_rollup(pid_t pid, struct ml_rollup *out)
{
    char path[64], buf[4096];
    proc_path(path, sizeof path, pid, "smaps_rollup");
    if (ml_read_file(path, buf, sizeof buf) < 0)
        return -1;
    if (ml_parse_smaps_rollup(buf, out) < 0) {
        errno = EPROTO;
        return -1;
    }
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Hex number ending at `stop`; advances *p past the stop character. */
static int take_hex(const char **p, char stop, unsigned long long *out)
{
    const char *s = *p;
    unsigned long long v = 0;
    int digits = 0, d;
    while ((d = hexval((unsigned char)*s)) >= 0) {
        if (digits == 16)
            return -1;
        v = (v << 4) | (unsigned)d;
        digits++;
        s++;
    }
    if (digits == 0 || *s != stop)
        return -1;
    *p = s + 1;
    *out = v;
    return 0;
}

int ml_parse_maps_line(const char *line, struct ml_vma *out)
{
    if (line == NULL)
        return -1;
    struct ml_vma v = {0};
    const char *p = line;
    unsigned long long start, end, offset, major, minor, inode;
    if (take_hex(&p, '-', &start) < 0 || take_hex(&p, ' ', &end) < 0 || end < start)
        return -1;
    for (int i = 0; i < 4; i++) {
        if (p[i] == '\0' || p[i] == '\n')
            return -1;
        v.perms[i] = p[i];
    }
    v.perms[4] = '\0';
    if (!strchr("r-", v.perms[0]) || !strchr("w-", v.perms[1]) ||
        !strchr("x-", v.perms[2]) || !strchr("ps", v.perms[3]) || p[4] != ' ')
        return -1;
    p += 5;
    if (take_hex(&p, ' ', &offset) < 0 || take_hex(&p, ':', &major) < 0 ||
        take_hex(&p, ' ', &minor) < 0)
        return -1;
    char *e;
    if (*p < '0' || *p > '9')
        return -1;
    errno = 0;
    inode = strtoull(p, &e, 10);
    if (errno == ERANGE || (*e != ' ' && *e != '\n' && *e != '\0'))
        return -1;
    p = e;
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, "\n");
    if (n >= sizeof v.path)
        n = sizeof v.path - 1;
    memcpy(v.path, p, n);
    v.path[n] = '\0';
    v.start = (uintptr_t)start;
    v.end = (uintptr_t)end;
    v.offset = offset;
    v.dev_major = (unsigned)major;
    v.dev_minor = (unsigned)minor;
    v.inode = (unsigned long)inode;
    *out = v;
    return 0;
}

int ml_maps_open(struct ml_maps_iter *it, pid_t pid)
{
    char path[64];
    proc_path(path, sizeof path, pid, "maps");
    it->fd = open(path, O_RDONLY | O_CLOEXEC);
    it->len = it->pos = 0;
    it->eof = false;
    return it->fd < 0 ? -1 : 0;
}

int ml_maps_next(struct ml_maps_iter *it, struct ml_vma *out)
{
    for (;;) {
        char *start = it->buf + it->pos;
        char *nl = memchr(start, '\n', it->len - it->pos);
        if (nl) {
            *nl = '\0';
            it->pos = (size_t)(nl - it->buf) + 1;
            if (ml_parse_maps_line(start, out) < 0) {
                errno = EPROTO;
                return -1;
            }
            return 1;
        }
        if (it->eof) {
            if (it->pos == it->len)
                return 0;
            /* a last line without '\n' */
            it->buf[it->len] = '\0';
            it->pos = it->len;
            if (ml_parse_maps_line(start, out) < 0) {
                errno = EPROTO;
                return -1;
            }
            return 1;
        }
        /* keep the partial line, refill after it */
        size_t rest = it->len - it->pos;
        memmove(it->buf, it->buf + it->pos, rest);
        it->len = rest;
        it->pos = 0;
        if (it->len >= sizeof it->buf - 1) {
            errno = EFBIG;      /* a line longer than the buffer */
            return -1;
        }
        ssize_t n = read(it->fd, it->buf + it->len, sizeof it->buf - 1 - it->len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            it->eof = true;
        it->len += (size_t)n;
    }
}

void ml_maps_close(struct ml_maps_iter *it)
{
    if (it->fd >= 0)
        close(it->fd);
    it->fd = -1;
}

int ml_maps_find(pid_t pid, uintptr_t addr, struct ml_vma *out)
{
    struct ml_maps_iter it;
    if (ml_maps_open(&it, pid) < 0)
        return -1;
    struct ml_vma v;
    int r;
    while ((r = ml_maps_next(&it, &v)) == 1) {
        if (addr >= v.start && addr < v.end) {
            *out = v;
            break;
        }
    }
    int err = errno;
    ml_maps_close(&it);
    errno = err;
    return r;   /* 1 found, 0 not mapped, -1 error */
}
