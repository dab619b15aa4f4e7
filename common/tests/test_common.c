/* test_common.c - Check unit tests for the helper library in common/.
 *
 * `make test-c` builds this against build/libmemlab.a and runs it from
 * common/tests, so fixtures are opened as "fixtures/<name>". The fixtures are
 * real /proc captures (see the list at the end of this comment); the malformed
 * inputs are written inline next to the test that feeds them.
 *
 * Layout: the tests of each source file come together (error, args, procfs,
 * usage, report), and the table `tests[]` at the end puts each one in the TCase
 * of its file. Table-driven cases are Check loop tests: one result per row, the
 * row index in `_i`. Every test runs in its own fork (CK_FORK, the default), so
 * a test may exit, set the environment or call ml_init() without disturbing the
 * others.
 *
 * Fixtures (captured on Linux 6.18, x86_64):
 *   stat_self.txt        cat /proc/self/stat                   (state R)
 *   stat_init.txt        /proc/1/stat                          (negative nice)
 *   stat_kthreadd.txt    /proc/2/stat                          (kernel thread)
 *   stat_paren_comm.txt  a copy of sleep named "(a) b (c)"
 *   stat_zombie.txt      an exited, unreaped child             (state Z)
 *   status_self.txt, status_kthreadd.txt, smaps_rollup_self.txt, maps_self.txt
 *   maps_special.txt     a process mapping "/tmp/mlcap/my data file", a deleted
 *                        file and a memfd; 15 KiB, longer than the iterator buffer
 *   read_small.txt       "hello\nworld\n";  empty.txt: nothing
 */
#include "memlab.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ====================================================================== */
/* Helpers                                                                 */
/* ====================================================================== */

/* Read fixtures/<name> into buf (NUL-terminated); fails the test if it cannot. */
static void read_fixture(const char *name, char *buf, size_t size)
{
    char path[256];
    snprintf(path, sizeof path, "fixtures/%s", name);
    ssize_t n = ml_read_file(path, buf, size);
    ck_assert_msg(n >= 0, "cannot read %s: %s", path, strerror(errno));
}

/* Exit tests print their message; keep it out of the test log. */
static void quiet(void)
{
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
}

/* Code that exits (ml_die, ml_usage_error, a lab talking to a fake grader)
 * runs in a child of the test. Its stdout and stderr go to an in-memory file,
 * read back after it ends. */
typedef void (*child_fn)(void *arg);

static int capture_file(void)
{
    int fd = memfd_create("captured", MFD_CLOEXEC);
    ck_assert_msg(fd >= 0, "memfd_create: %s", strerror(errno));
    return fd;
}

/* Fork a child that runs fn(arg) with stdout and stderr on out_fd, and exits 0
 * when fn returns. */
static pid_t spawn(child_fn fn, void *arg, int out_fd)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        __fpurge(stdout);       /* output buffered by the runner is not ours */
        dup2(out_fd, STDOUT_FILENO);
        dup2(out_fd, STDERR_FILENO);
        alarm(5);               /* a hang fails the test instead of the suite */
        fn(arg);
        _exit(0);
    }
    return pid;
}

static int reap(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_msg(errno == EINTR, "waitpid: %s", strerror(errno));
    return status;
}

static void read_captured(int fd, char *out, size_t size)
{
    ssize_t n = pread(fd, out, size - 1, 0);
    ck_assert_msg(n >= 0, "pread: %s", strerror(errno));
    out[n] = '\0';
}

/* Run fn(arg) in a child; out gets what it printed. Returns the wait status. */
static int run_captured(child_fn fn, void *arg, char *out, size_t size)
{
    int fd = capture_file();
    int status = reap(spawn(fn, arg, fd));
    read_captured(fd, out, size);
    close(fd);
    return status;
}

#define assert_exited(status, code)                                              \
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == (code),           \
                  "wait status %#x, expected exit(%d)", (unsigned)(status), (code))

#define assert_contains(hay, needle)                                             \
    ck_assert_msg(strstr((hay), (needle)) != NULL, "'%s' not found in '%s'",      \
                  (needle), (hay))

#define assert_lacks(hay, needle)                                                \
    ck_assert_msg(strstr((hay), (needle)) == NULL, "'%s' unexpected in '%s'",     \
                  (needle), (hay))

/* ====================================================================== */
/* error.c                                                                 */
/* ====================================================================== */

static void child_die_enomem(void *arg)
{
    ml_progname = "tprog";
    errno = ENOMEM;
    ml_die("allocating %d bytes", 5);
}

static void child_die_no_errno(void *arg)
{
    ml_progname = "tprog";
    errno = 0;
    ml_die("plain %s", "failure");
}

static void child_die_child_with_pending_stdout(void *arg)
{
    ml_progname = "tprog";
    printf("pending");          /* no newline: still in the stdio buffer */
    errno = 0;
    ml_die_child("child failed");
}

static void child_warn(void *arg)
{
    ml_progname = "tprog";
    errno = EACCES;
    ml_warn("opening %s", "x");
    _exit(errno == EACCES ? 0 : 10);    /* ml_warn keeps errno */
}

static void child_usage_error(void *arg)
{
    ml_progname = "tprog";
    errno = ENOMEM;             /* a usage error is not a system error */
    ml_usage_error("unknown option '%s'", "-z");
}

START_TEST(die_exits_1)
{
    quiet();
    errno = ENOMEM;
    ml_die("out of memory");
}
END_TEST

START_TEST(die_names_errno)
{
    char out[1024], want[256];
    int status = run_captured(child_die_enomem, NULL, out, sizeof out);
    assert_exited(status, 1);
    snprintf(want, sizeof want, "tprog: allocating 5 bytes: ENOMEM %s\n", strerror(ENOMEM));
    ck_assert_str_eq(out, want);
}
END_TEST

START_TEST(die_without_errno)
{
    char out[1024];
    int status = run_captured(child_die_no_errno, NULL, out, sizeof out);
    assert_exited(status, 1);
    ck_assert_str_eq(out, "tprog: plain failure\n");
}
END_TEST

START_TEST(die_child_leaves_stdio_alone)
{
    /* A forked child must not write out the stdio buffer it inherited: the
     * parent flushes that text itself, so it would appear twice. */
    char out[1024];
    int status = run_captured(child_die_child_with_pending_stdout, NULL, out, sizeof out);
    assert_exited(status, 1);
    ck_assert_str_eq(out, "tprog: child failed\n");
}
END_TEST

START_TEST(warn_goes_on)
{
    char out[1024], want[256];
    int status = run_captured(child_warn, NULL, out, sizeof out);
    assert_exited(status, 0);
    snprintf(want, sizeof want, "tprog: opening x: EACCES %s\n", strerror(EACCES));
    ck_assert_str_eq(out, want);
}
END_TEST

START_TEST(usage_error_exits_2)
{
    char out[1024];
    int status = run_captured(child_usage_error, NULL, out, sizeof out);
    assert_exited(status, 2);
    ck_assert_str_eq(out, "tprog: unknown option '-z'\nTry 'tprog --help'.\n");
}
END_TEST

static const struct {
    int err;
    const char *name;
} errno_names[] = {
    {ENOMEM, "ENOMEM"}, {EINTR, "EINTR"}, {EFBIG, "EFBIG"}, {EPROTO, "EPROTO"},
    {ENOENT, "ENOENT"}, {99999, "E?"}, {-1, "E?"},
};

START_TEST(errno_name)
{
    ck_assert_str_eq(ml_errno_name(errno_names[_i].err), errno_names[_i].name);
}
END_TEST

/* ====================================================================== */
/* args.c                                                                  */
/* ====================================================================== */

static const struct {
    const char *arg;
    size_t want;
} sizes_ok[] = {
    {"4096", 4096},     {"1", 1},           {"64K", 64 * KiB},    {"64k", 64 * KiB},
    {"64KiB", 64 * KiB}, {"64KB", 64 * KiB}, {"256M", 256 * MiB}, {"256m", 256 * MiB},
    {"2MiB", 2 * MiB},  {"1G", GiB},        {"1g", GiB},          {"3GB", 3 * GiB},
    {"007", 7},         {"9223372036854775807", SIZE_MAX / 2},
    {"8589934591G", (size_t)8589934591 << 30},          /* the largest in G */
    {" 64K", 64 * KiB},                 /* white space first, as strtoull allows */
};

START_TEST(try_parse_size_ok)
{
    size_t v = 0;
    const char *err = NULL;
    int r = ml_try_parse_size(sizes_ok[_i].arg, &v, &err);
    ck_assert_msg(r == 0, "'%s' refused: %s", sizes_ok[_i].arg, err ? err : "(no reason)");
    ck_assert_uint_eq(v, sizes_ok[_i].want);
}
END_TEST

static const char *const sizes_bad[] = {
    "0", "0K", "-1", "-64K", "", "12X", "1.5M", "K", "64 K", "64Ki", "64iB", "64KiBx",
    "64kib", "0x10", "18446744073709551616", "17179869184G", "9223372036854775808",
    "8589934592G",
    " -1", "\t-64K", " -18446744073709551615",          /* not 1 */
};

START_TEST(try_parse_size_bad)
{
    size_t v = 12345;
    const char *err = NULL;
    int r = ml_try_parse_size(sizes_bad[_i], &v, &err);
    ck_assert_msg(r == -1, "'%s' accepted as %zu", sizes_bad[_i], v);
    ck_assert_ptr_nonnull(err);
    ck_assert_uint_eq(v, 12345);        /* *out untouched */
}
END_TEST

START_TEST(try_parse_size_null)
{
    size_t v = 1;
    const char *err = NULL;
    ck_assert_int_eq(ml_try_parse_size(NULL, &v, &err), -1);
    ck_assert_ptr_nonnull(err);
}
END_TEST

static const struct {
    const char *arg;
    long min, max;
    bool ok;
    long want;
} longs[] = {
    {"42", 0, 100, true, 42},
    {"0", 0, 100, true, 0},
    {"100", 0, 100, true, 100},          /* bounds are inclusive */
    {"101", 0, 100, false, 0},
    {"-1", 0, 100, false, 0},
    {"-5", -10, 10, true, -5},
    {"0x10", 0, 100, true, 16},
    {"0X1f", 0, 100, true, 31},
    {"-0x10", -100, 100, true, -16},
    {"010", 0, 100, true, 10},           /* decimal, not octal */
    {"08", 0, 100, true, 8},
    {"9223372036854775807", LONG_MIN, LONG_MAX, true, LONG_MAX},
    {"-9223372036854775808", LONG_MIN, LONG_MAX, true, LONG_MIN},
    {"9223372036854775808", LONG_MIN, LONG_MAX, false, 0},   /* ERANGE */
    {"-9223372036854775809", LONG_MIN, LONG_MAX, false, 0},  /* ERANGE */
    {"0xffffffffffffffffff", LONG_MIN, LONG_MAX, false, 0},  /* ERANGE */
    {"", 0, 100, false, 0},
    {"abc", 0, 100, false, 0},
    {"12abc", 0, 100, false, 0},
    {"1.5", 0, 100, false, 0},
    {"0x", 0, 100, false, 0},
    {"0xg", 0, 100, false, 0},
    {"--1", -10, 10, false, 0},
    {" 5", 0, 100, true, 5},             /* white space first, as strtol allows */
    {" 010", 0, 100, true, 10},
    {"+7", 0, 100, true, 7},
    {"- 5", -10, 10, false, 0},
    {"5 ", 0, 100, false, 0},
};

START_TEST(try_parse_long)
{
    long v = 12345;
    const char *err = NULL;
    int r = ml_try_parse_long(longs[_i].arg, longs[_i].min, longs[_i].max, &v, &err);
    if (longs[_i].ok) {
        ck_assert_msg(r == 0, "'%s' refused: %s", longs[_i].arg, err ? err : "(no reason)");
        ck_assert_int_eq(v, longs[_i].want);
    } else {
        ck_assert_msg(r == -1, "'%s' accepted as %ld", longs[_i].arg, v);
        ck_assert_ptr_nonnull(err);
        ck_assert_int_eq(v, 12345);
    }
}
END_TEST

START_TEST(try_parse_long_null)
{
    long v = 1;
    const char *err = NULL;
    ck_assert_int_eq(ml_try_parse_long(NULL, 0, 10, &v, &err), -1);
    ck_assert_ptr_nonnull(err);
}
END_TEST

START_TEST(parse_good_values)
{
    ck_assert_uint_eq(ml_parse_size("64K", "--size"), 64 * KiB);
    ck_assert_int_eq(ml_parse_long("0x20", "--count", 0, 100), 32);
    ck_assert_double_eq(ml_parse_fraction("0", "--ratio"), 0.0);
    ck_assert_double_eq(ml_parse_fraction("1", "--ratio"), 1.0);
    ck_assert_double_eq(ml_parse_fraction("0.25", "--ratio"), 0.25);
    ck_assert_double_eq(ml_parse_fraction(".5", "--ratio"), 0.5);
    ck_assert_double_eq(ml_parse_fraction("1e-1", "--ratio"), 0.1);
}
END_TEST

/* Each bad value: the function exits 2 (exit test) and names the option. */
static const char *const bad_size_args[] = {"abc", "0", "", "-4K", "17179869184G"};
static const char *const bad_long_args[] = {"11", "-1", "x", "", "99999999999999999999"};
static const char *const bad_fraction_args[] = {"1.5", "-0.1", "abc", "", "nan", "inf", "0.5x", "1e999"};

START_TEST(parse_size_exits_2)
{
    quiet();
    ml_parse_size(bad_size_args[_i], "--size");
}
END_TEST

START_TEST(parse_long_exits_2)
{
    quiet();
    ml_parse_long(bad_long_args[_i], "--count", 0, 10);
}
END_TEST

START_TEST(parse_fraction_exits_2)
{
    quiet();
    ml_parse_fraction(bad_fraction_args[_i], "--ratio");
}
END_TEST

static void child_parse_size(void *arg) { ml_progname = "tprog"; ml_parse_size(arg, "--size"); }
static void child_parse_long(void *arg) { ml_progname = "tprog"; ml_parse_long(arg, "--count", 0, 10); }
static void child_parse_fraction(void *arg) { ml_progname = "tprog"; ml_parse_fraction(arg, "--ratio"); }

START_TEST(parse_errors_name_the_option)
{
    char out[1024];
    int status = run_captured(child_parse_size, "12X", out, sizeof out);
    assert_exited(status, 2);
    assert_contains(out, "tprog: --size '12X': ");
    assert_contains(out, "Try 'tprog --help'.");

    status = run_captured(child_parse_long, "11", out, sizeof out);
    assert_exited(status, 2);
    assert_contains(out, "--count '11': out of range (expected 0..10)");

    status = run_captured(child_parse_fraction, "1.5", out, sizeof out);
    assert_exited(status, 2);
    assert_contains(out, "--ratio '1.5'");

    status = run_captured(child_parse_fraction, "", out, sizeof out);
    assert_exited(status, 2);
    assert_contains(out, "--ratio");
}
END_TEST

/* ====================================================================== */
/* procfs.c: ml_read_file                                                  */
/* ====================================================================== */

/* The lowest free descriptor: the same before and after a call means the
 * call closed what it opened. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    ck_assert_int_ge(fd, 0);
    close(fd);
    return fd;
}

START_TEST(read_file_normal)
{
    char buf[64];
    memset(buf, 'z', sizeof buf);
    int fd_before = lowest_free_fd();
    ck_assert_int_eq(ml_read_file("fixtures/read_small.txt", buf, sizeof buf), 12);
    ck_assert_str_eq(buf, "hello\nworld\n");
    ck_assert_int_eq(lowest_free_fd(), fd_before);
}
END_TEST

START_TEST(read_file_exact_fit)
{
    char buf[13];               /* 12 bytes and the NUL */
    ck_assert_int_eq(ml_read_file("fixtures/read_small.txt", buf, sizeof buf), 12);
    ck_assert_str_eq(buf, "hello\nworld\n");
}
END_TEST

START_TEST(read_file_too_small)
{
    char buf[12];
    int fd_before = lowest_free_fd();
    errno = 0;
    ck_assert_int_eq(ml_read_file("fixtures/read_small.txt", buf, sizeof buf), -1);
    ck_assert_int_eq(errno, EFBIG);
    ck_assert_str_eq(buf, "hello\nworld");          /* cut, still a string */
    ck_assert_int_eq(lowest_free_fd(), fd_before);

    errno = 0;
    ck_assert_int_eq(ml_read_file("fixtures/read_small.txt", buf, 1), -1);
    ck_assert_int_eq(errno, EFBIG);
    ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(read_file_empty)
{
    char buf[8] = "xxxxxxx";
    ck_assert_int_eq(ml_read_file("fixtures/empty.txt", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(ml_read_file("fixtures/empty.txt", buf, 1), 0);
}
END_TEST

START_TEST(read_file_errors)
{
    char buf[64];
    errno = 0;
    ck_assert_int_eq(ml_read_file("fixtures/no-such-file", buf, sizeof buf), -1);
    ck_assert_int_eq(errno, ENOENT);

    errno = 0;
    ck_assert_int_eq(ml_read_file("fixtures/read_small.txt", buf, 0), -1);
    ck_assert_int_eq(errno, EINVAL);

    int fd_before = lowest_free_fd();
    errno = 0;
    ck_assert_int_eq(ml_read_file("fixtures", buf, sizeof buf), -1);  /* read() fails */
    ck_assert_int_eq(errno, EISDIR);
    ck_assert_int_eq(lowest_free_fd(), fd_before);
}
END_TEST

START_TEST(read_file_proc)
{
    static char big[64 * 1024];
    char small[100];
    ssize_t n = ml_read_file("/proc/self/maps", big, sizeof big);
    ck_assert_int_gt(n, 100);
    ck_assert_uint_eq(strlen(big), (size_t)n);
    errno = 0;
    ck_assert_int_eq(ml_read_file("/proc/self/maps", small, sizeof small), -1);
    ck_assert_int_eq(errno, EFBIG);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
}
END_TEST

/* ====================================================================== */
/* procfs.c: stat                                                          */
/* ====================================================================== */

static const struct {
    const char *file;
    char state;
    pid_t ppid;
    unsigned long minflt, cminflt, majflt, cmajflt;
    unsigned long long vsize;
    long rss_pages;
} stat_fixtures[] = {
    {"stat_self.txt", 'R', 5120, 116, 0, 0, 0, 3133440, 414},
    {"stat_init.txt", 'S', 0, 22354, 373708, 0, 257, 39927808, 2494},
    {"stat_kthreadd.txt", 'S', 0, 0, 0, 0, 0, 0, 0},
    {"stat_paren_comm.txt", 'S', 5125, 124, 0, 0, 0, 2990080, 395},
    {"stat_zombie.txt", 'Z', 5155, 219, 0, 0, 0, 0, 0},
};

START_TEST(stat_fixture)
{
    char text[1024];
    struct ml_stat st;
    read_fixture(stat_fixtures[_i].file, text, sizeof text);
    ck_assert_int_eq(ml_parse_stat(text, &st), 0);
    ck_assert_int_eq(st.state, stat_fixtures[_i].state);
    ck_assert_int_eq(st.ppid, stat_fixtures[_i].ppid);
    ck_assert_uint_eq(st.minflt, stat_fixtures[_i].minflt);
    ck_assert_uint_eq(st.cminflt, stat_fixtures[_i].cminflt);
    ck_assert_uint_eq(st.majflt, stat_fixtures[_i].majflt);
    ck_assert_uint_eq(st.cmajflt, stat_fixtures[_i].cmajflt);
    ck_assert_uint_eq(st.vsize, stat_fixtures[_i].vsize);
    ck_assert_int_eq(st.rss_pages, stat_fixtures[_i].rss_pages);
}
END_TEST

/* Fields 4-24 after "pid (comm) S": ppid pgrp session tty_nr tpgid flags
 * minflt cminflt majflt cmajflt | utime stime cutime cstime priority nice
 * num_threads itrealvalue starttime vsize rss */
#define STAT_TAIL " 1 2 3 4 20 0 1 0 152159 3133440 414 18446744073709551615 0\n"

START_TEST(stat_synthetic)
{
    struct ml_stat st;
    /* the template of the malformed lines below is itself well formed */
    ck_assert_int_eq(ml_parse_stat("7 (cat) R 5120 5120 3374 0 -1 4194304 116 7 8 9" STAT_TAIL, &st), 0);
    ck_assert_uint_eq(st.minflt, 116);
    ck_assert_uint_eq(st.cmajflt, 9);
    ck_assert_int_eq(st.rss_pages, 414);
    /* a comm that looks like the start of the fields: the last ')' counts */
    ck_assert_int_eq(ml_parse_stat("7 () R 9 9 ) S 42 5120 3374 0 -1 4194304 116 0 0 0" STAT_TAIL, &st), 0);
    ck_assert_int_eq(st.state, 'S');
    ck_assert_int_eq(st.ppid, 42);
    /* the fields up to rss are enough; no trailing newline needed */
    ck_assert_int_eq(ml_parse_stat("7 (x) D 1 1 1 0 -1 0 5 0 0 0 0 0 0 0 20 0 1 0 1 4096 1", &st), 0);
    ck_assert_int_eq(st.state, 'D');
    ck_assert_int_eq(st.rss_pages, 1);
}
END_TEST

static const char *const stat_bad[] = {
    "",
    "7",
    "7 (cat",
    "7 (cat R 5120 5120 3374 0 -1 4194304 116 0 0 0" STAT_TAIL,       /* no ')' */
    "7 cat) R",
    "7 (cat)",
    "7 (cat) ",
    "7 (cat) R",
    "7 (cat) R ",
    "7 (cat) R 5120 5120 3374 0 -1 4194304 116 0 0\n",                  /* truncated */
    "7 (cat) R 5120 5120 3374 0 -1 4194304 116 0 0 0 1 2 3 4 20 0 1 0 152159 3133440",
    "7 (cat)  5120 5120 3374 0 -1 4194304 116 0 0 0" STAT_TAIL,        /* no state */
    "7 (cat) R5120 5120 3374 0 -1 4194304 116 0 0 0" STAT_TAIL,
    "7 (cat) R x 5120 3374 0 -1 4194304 116 0 0 0" STAT_TAIL,          /* non-numeric */
    "7 (cat) R 5120 5120 3374 0 -1 4194304 11x6 0 0 0" STAT_TAIL,
    "7 (cat) R 5120 5120 3374 0 -1 4194304 0x74 0 0 0" STAT_TAIL,
    "7 (cat) R 5120 5120 3374 0 - 4194304 116 0 0 0" STAT_TAIL,
    "7 (cat) R 5120 5120 3374 0 -1 4194304 -116 0 0 0" STAT_TAIL,      /* negative count */
    "7 (cat) R -5120 5120 3374 0 -1 4194304 116 0 0 0" STAT_TAIL,
    "7 (cat) R 5120  5120 3374 0 -1 4194304 116 0 0 0" STAT_TAIL,      /* two spaces */
    "7 (cat) R 5120\t5120 3374 0 -1 4194304 116 0 0 0" STAT_TAIL,
    "7 (cat) R 5120 5120 3374 0 -1 4194304 99999999999999999999 0 0 0" STAT_TAIL,
    "7 (cat) R 5120 5120 3374 0 -1 4194304 9223372036854775808 0 0 0" STAT_TAIL,
};

START_TEST(stat_malformed)
{
    struct ml_stat st;
    memset(&st, 0xab, sizeof st);
    struct ml_stat before = st;
    ck_assert_int_eq(ml_parse_stat(stat_bad[_i], &st), -1);
    ck_assert_mem_eq(&st, &before, sizeof st);      /* untouched on error */
}
END_TEST

START_TEST(stat_null)
{
    struct ml_stat st;
    ck_assert_int_eq(ml_parse_stat(NULL, &st), -1);
}
END_TEST

START_TEST(stat_every_truncation)
{
    /* every prefix of a real line that stops before the rss field is refused */
    char text[1024], cut[1024];
    struct ml_stat st;
    read_fixture("stat_paren_comm.txt", text, sizeof text);
    const char *p = strrchr(text, ')') + 4;         /* the ppid field */
    for (int spaces = 0; spaces < 20; p++)
        if (*p == ' ')
            spaces++;
    size_t rss_at = (size_t)(p - text);             /* start of field 24 */
    ck_assert_int_eq(strncmp(p, "395 ", 4), 0);
    for (size_t n = 0; n < rss_at; n++) {
        memcpy(cut, text, n);
        cut[n] = '\0';
        ck_assert_msg(ml_parse_stat(cut, &st) == -1, "accepted a line cut at %zu: '%s'", n, cut);
    }
}
END_TEST

START_TEST(read_stat_self)
{
    struct ml_stat st;
    ck_assert_int_eq(ml_read_stat(0, &st), 0);
    ck_assert_int_eq(st.state, 'R');
    ck_assert_uint_gt(st.minflt, 0);
    ck_assert_int_eq(st.ppid, getppid());
    ck_assert_uint_gt(st.vsize, 0);
    ck_assert_int_gt(st.rss_pages, 0);

    struct ml_stat by_pid;
    ck_assert_int_eq(ml_read_stat(getpid(), &by_pid), 0);
    ck_assert_int_eq(by_pid.ppid, st.ppid);

    ck_assert_int_eq(ml_read_stat(getppid(), &by_pid), 0);   /* another process */

    errno = 0;
    ck_assert_int_eq(ml_read_stat(INT_MAX, &st), -1);         /* above pid_max */
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

/* ====================================================================== */
/* procfs.c: status                                                        */
/* ====================================================================== */

START_TEST(status_fixture)
{
    char text[4096];
    struct ml_status s;
    read_fixture("status_self.txt", text, sizeof text);
    ck_assert_int_eq(ml_parse_status(text, &s), 0);
    ck_assert_int_eq(s.vm_size_kb, 3060);
    ck_assert_int_eq(s.vm_rss_kb, 1748);
    ck_assert_int_eq(s.vm_hwm_kb, 1748);
    ck_assert_int_eq(s.rss_anon_kb, 112);
    ck_assert_int_eq(s.rss_file_kb, 1636);
    ck_assert_int_eq(s.rss_shmem_kb, 0);
    ck_assert_int_eq(s.vm_data_kb, 360);
    ck_assert_int_eq(s.vm_stk_kb, 132);
    ck_assert_int_eq(s.vm_pte_kb, 44);
}
END_TEST

START_TEST(status_missing_keys)
{
    struct ml_status s;
    ck_assert_int_eq(ml_parse_status("Name:\tcat\nVmRSS:\t  100 kB\nThreads:\t1\nVmSize: 2000 kB", &s), 0);
    ck_assert_int_eq(s.vm_rss_kb, 100);
    ck_assert_int_eq(s.vm_size_kb, 2000);
    ck_assert_int_eq(s.vm_hwm_kb, -1);
    ck_assert_int_eq(s.rss_anon_kb, -1);
    ck_assert_int_eq(s.rss_file_kb, -1);
    ck_assert_int_eq(s.rss_shmem_kb, -1);
    ck_assert_int_eq(s.vm_data_kb, -1);
    ck_assert_int_eq(s.vm_stk_kb, -1);
    ck_assert_int_eq(s.vm_pte_kb, -1);
}
END_TEST

START_TEST(status_kernel_thread)
{
    /* A kernel thread's status has none of the memory lines: not a status the
     * parser can use, so it is refused rather than returned all -1. */
    char text[4096];
    struct ml_status s;
    read_fixture("status_kthreadd.txt", text, sizeof text);
    ck_assert_int_eq(ml_parse_status(text, &s), -1);
}
END_TEST

static const char *const status_bad[] = {
    "",
    "\n\n",
    "Name:\tcat\nState:\tR (running)\n",        /* none of the keys */
    "VmRSS:\tabc kB\n",                          /* non-numeric */
    "VmRSS:\t\n",
    "VmRSS:\n100 kB\n",                          /* value on the next line */
    "VmRSS:\t100\n",                             /* no unit */
    "VmRSS:\t100",
    "VmRSS:\t100 MB\n",
    "VmRSS:\t100 B\n",
    "VmRSS:\t-5 kB\n",
    "VmRSS:\t99999999999999999999 kB\n",
    "VmSize:\t100 kB\nVmRSS:\tx kB\nVmHWM:\t5 kB\n",   /* one bad line spoils all */
    "VmRSS 100 kB\n",                            /* no colon */
    "VmRS:\t100 kB\nVmRSSS:\t100 kB\n",           /* near misses only */
};

START_TEST(status_malformed)
{
    struct ml_status s;
    memset(&s, 0xab, sizeof s);
    struct ml_status before = s;
    ck_assert_int_eq(ml_parse_status(status_bad[_i], &s), -1);
    ck_assert_mem_eq(&s, &before, sizeof s);
}
END_TEST

START_TEST(status_null)
{
    struct ml_status s;
    ck_assert_int_eq(ml_parse_status(NULL, &s), -1);
}
END_TEST

START_TEST(read_status_self)
{
    struct ml_status s;
    ck_assert_int_eq(ml_read_status(0, &s), 0);
    ck_assert_int_gt(s.vm_rss_kb, 0);
    ck_assert_int_ge(s.vm_size_kb, s.vm_rss_kb);
    ck_assert_int_ge(s.vm_hwm_kb, s.vm_rss_kb);
    ck_assert_int_ge(s.rss_anon_kb, 0);
    ck_assert_int_ge(s.rss_file_kb, 0);
    ck_assert_int_ge(s.rss_shmem_kb, 0);
    ck_assert_int_eq(s.rss_anon_kb + s.rss_file_kb + s.rss_shmem_kb, s.vm_rss_kb);
    ck_assert_int_gt(s.vm_data_kb, 0);
    ck_assert_int_gt(s.vm_stk_kb, 0);
    ck_assert_int_gt(s.vm_pte_kb, 0);
    errno = 0;
    ck_assert_int_eq(ml_read_status(INT_MAX, &s), -1);
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

/* ====================================================================== */
/* procfs.c: smaps_rollup                                                  */
/* ====================================================================== */

START_TEST(rollup_fixture)
{
    char text[4096];
    struct ml_rollup r;
    read_fixture("smaps_rollup_self.txt", text, sizeof text);
    ck_assert_int_eq(ml_parse_smaps_rollup(text, &r), 0);
    ck_assert_int_eq(r.rss_kb, 1616);
    ck_assert_int_eq(r.pss_kb, 524);
    ck_assert_int_eq(r.pss_anon_kb, 112);
    ck_assert_int_eq(r.pss_file_kb, 412);
    ck_assert_int_eq(r.shared_clean_kb, 1380);
    ck_assert_int_eq(r.shared_dirty_kb, 0);
    ck_assert_int_eq(r.private_clean_kb, 124);
    ck_assert_int_eq(r.private_dirty_kb, 112);
    ck_assert_int_eq(r.anonymous_kb, 112);
    ck_assert_int_eq(r.anon_huge_kb, 0);
    ck_assert_int_eq(r.swap_kb, 0);
}
END_TEST

START_TEST(rollup_cut_short)
{
    /* a capture cut after Pss: the rest stays -1 */
    char text[4096];
    struct ml_rollup r;
    read_fixture("smaps_rollup_self.txt", text, sizeof text);
    char *cut = strstr(text, "Pss_Dirty:");
    ck_assert_ptr_nonnull(cut);
    *cut = '\0';
    ck_assert_int_eq(ml_parse_smaps_rollup(text, &r), 0);
    ck_assert_int_eq(r.rss_kb, 1616);
    ck_assert_int_eq(r.pss_kb, 524);
    ck_assert_int_eq(r.pss_anon_kb, -1);
    ck_assert_int_eq(r.private_dirty_kb, -1);
    ck_assert_int_eq(r.swap_kb, -1);
}
END_TEST

static const char *const rollup_bad[] = {
    "",
    "Pss_Anon:   5 kB\nAnonymous:   3 kB\n",      /* neither Rss nor Pss */
    "Rss:   5 kB\nAnonymous:   3 kB\n",           /* no Pss */
    "Pss:   5 kB\n",                              /* no Rss */
    "garbage\n",
    "\x01\x02\x03\xff",
    "a:b:c\n:::\n: kB\n",
    "Rss: lots kB\nPss: 1 kB\n",
    "Rss: 5\nPss: 4\n",
    "557a6cfc3000-7fff5424d000 ---p 00000000 00:00 0   [rollup]\n",
};

START_TEST(rollup_malformed)
{
    struct ml_rollup r;
    memset(&r, 0xab, sizeof r);
    struct ml_rollup before = r;
    ck_assert_int_eq(ml_parse_smaps_rollup(rollup_bad[_i], &r), -1);
    ck_assert_mem_eq(&r, &before, sizeof r);
}
END_TEST

START_TEST(read_rollup_self)
{
    struct ml_rollup r;
    ck_assert_int_eq(ml_read_smaps_rollup(0, &r), 0);
    ck_assert_int_gt(r.rss_kb, 0);
    ck_assert_int_gt(r.pss_kb, 0);
    ck_assert_int_le(r.pss_kb, r.rss_kb);
    ck_assert_int_ge(r.pss_anon_kb, 0);
    ck_assert_int_ge(r.private_dirty_kb, 0);
    ck_assert_int_ge(r.anonymous_kb, 0);
    ck_assert_int_ge(r.swap_kb, 0);
    ck_assert_int_eq(r.shared_clean_kb + r.shared_dirty_kb + r.private_clean_kb +
                     r.private_dirty_kb, r.rss_kb);
}
END_TEST

/* ====================================================================== */
/* procfs.c: maps lines                                                    */
/* ====================================================================== */

static const struct {
    const char *line;
    uintptr_t start, end;
    const char *perms;
    unsigned long long offset;
    unsigned major, minor;
    unsigned long inode;
    const char *path;
} maps_ok[] = {
    {"00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon\n",
     0x400000, 0x452000, "r-xp", 0, 8, 2, 173521, "/usr/bin/dbus-daemon"},
    {"7fdcf384d000-7fdcf386f000 rw-p 00000000 00:00 0 \n",          /* anonymous */
     0x7fdcf384d000, 0x7fdcf386f000, "rw-p", 0, 0, 0, 0, ""},
    {"7fdcf384d000-7fdcf386f000 rw-p 00000000 00:00 0",
     0x7fdcf384d000, 0x7fdcf386f000, "rw-p", 0, 0, 0, 0, ""},
    {"5564ba389000-5564ba3aa000 rw-p 00000000 00:00 0                          [heap]\n",
     0x5564ba389000, 0x5564ba3aa000, "rw-p", 0, 0, 0, 0, "[heap]"},
    {"7ffd52ad3000-7ffd52af4000 rw-p 00000000 00:00 0                          [stack]",
     0x7ffd52ad3000, 0x7ffd52af4000, "rw-p", 0, 0, 0, 0, "[stack]"},
    {"7fdcf3ac5000-7fdcf3ac7000 r-xp 00000000 00:00 0                          [vdso]\n",
     0x7fdcf3ac5000, 0x7fdcf3ac7000, "r-xp", 0, 0, 0, 0, "[vdso]"},
    {"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n",
     0xffffffffff600000, 0xffffffffff601000, "--xp", 0, 0, 0, 0, "[vsyscall]"},
    {"7f7869ed4000-7f7869ed6000 rw-s 00000000 fe:00 10953214                   /tmp/mlcap/my data file\n",
     0x7f7869ed4000, 0x7f7869ed6000, "rw-s", 0, 0xfe, 0, 10953214, "/tmp/mlcap/my data file"},
    {"7f7869ed3000-7f7869ed4000 r--s 00000000 fe:00 10953215                   /tmp/mlcap/gone (deleted)\n",
     0x7f7869ed3000, 0x7f7869ed4000, "r--s", 0, 0xfe, 0, 10953215, "/tmp/mlcap/gone (deleted)"},
    {"7f7869ed2000-7f7869ed3000 rw-s 00000000 00:01 1027                       /memfd:ml test (deleted)",
     0x7f7869ed2000, 0x7f7869ed3000, "rw-s", 0, 0, 1, 1027, "/memfd:ml test (deleted)"},
    {"7f0000000000-7f0000001000 ---p 1a2b3c4d5e 103:05 18446744073709551615 /x\n",
     0x7f0000000000, 0x7f0000001000, "---p", 0x1a2b3c4d5eULL, 0x103, 5, ULONG_MAX, "/x"},
    {"1000-1000 r--p 00000000 00:00 0 ",                                /* empty range */
     0x1000, 0x1000, "r--p", 0, 0, 0, 0, ""},
    {"ABCD000-ABCE000 r--p 0000000F 0A:0B 1 [x]",                       /* upper-case hex */
     0xabcd000, 0xabce000, "r--p", 0xf, 10, 11, 1, "[x]"},
};

START_TEST(maps_line_ok)
{
    struct ml_vma v;
    memset(&v, 0xab, sizeof v);
    ck_assert_int_eq(ml_parse_maps_line(maps_ok[_i].line, &v), 0);
    ck_assert_uint_eq(v.start, maps_ok[_i].start);
    ck_assert_uint_eq(v.end, maps_ok[_i].end);
    ck_assert_str_eq(v.perms, maps_ok[_i].perms);
    ck_assert_uint_eq(v.offset, maps_ok[_i].offset);
    ck_assert_uint_eq(v.dev_major, maps_ok[_i].major);
    ck_assert_uint_eq(v.dev_minor, maps_ok[_i].minor);
    ck_assert_uint_eq(v.inode, maps_ok[_i].inode);
    ck_assert_str_eq(v.path, maps_ok[_i].path);
}
END_TEST

START_TEST(maps_line_long_path)
{
    /* a lab may live deep down: any path the kernel can print is kept whole */
    static char line[2 * PATH_MAX], path[PATH_MAX + 100];
    static struct ml_vma v;
    size_t lens[] = {254, 255, 256, 300, 1000, PATH_MAX - 1, PATH_MAX + 10, PATH_MAX + 15,
                     PATH_MAX + 16, PATH_MAX + 99};
    for (size_t k = 0; k < ARRAY_LEN(lens); k++) {
        memset(path, 'a', lens[k]);
        path[0] = '/';
        path[lens[k]] = '\0';
        snprintf(line, sizeof line, "1000-2000 r--p 00000000 08:01 42 %s\n", path);
        memset(&v, 0xab, sizeof v);
        ck_assert_int_eq(ml_parse_maps_line(line, &v), 0);
        size_t want = lens[k] < sizeof v.path ? lens[k] : sizeof v.path - 1;
        ck_assert_uint_eq(strnlen(v.path, sizeof v.path), want);   /* NUL-terminated */
        ck_assert_int_eq(strncmp(v.path, path, want), 0);
        ck_assert_uint_eq(v.inode, 42);
        if (lens[k] < PATH_MAX + 16)
            ck_assert_uint_eq(want, lens[k]);
    }
}
END_TEST

static const char *const maps_bad[] = {
    "",
    "\n",
    " 00400000-00452000 r-xp 00000000 08:02 1 /x",
    "0040zz00-00452000 r-xp 00000000 08:02 1 /x",             /* bad hex */
    "00400000-0045200g r-xp 00000000 08:02 1 /x",
    "0x400000-0x452000 r-xp 00000000 08:02 1 /x",
    "00452000-00400000 r-xp 00000000 08:02 1 /x",             /* end < start */
    "00400000 00452000 r-xp 00000000 08:02 1 /x",             /* no '-' */
    "-00452000 r-xp 00000000 08:02 1 /x",
    "00400000- r-xp 00000000 08:02 1 /x",
    "00400000-00452000 rwxq 00000000 08:02 1 /x",             /* bad perms */
    "00400000-00452000 xr-p 00000000 08:02 1 /x",
    "00400000-00452000 R-xp 00000000 08:02 1 /x",
    "00400000-00452000 r-x- 00000000 08:02 1 /x",
    "00400000-00452000 r-xpp 00000000 08:02 1 /x",
    "00400000-00452000 r-x 00000000 08:02 1 /x",
    "00400000-00452000 rw\n",
    "00400000-00452000",                                       /* missing fields */
    "00400000-00452000 ",
    "00400000-00452000 r-xp",
    "00400000-00452000 r-xp ",
    "00400000-00452000 r-xp 00000000",
    "00400000-00452000 r-xp 00000000 08:02",
    "00400000-00452000 r-xp 00000000 08:02 ",
    "00400000-00452000 r-xp 00000000 08:02\n",
    "00400000-00452000 r-xp 00000000 0802 1 /x",
    "00400000-00452000 r-xp 00000000 08: 1 /x",
    "00400000-00452000 r-xp  00000000 08:02 1 /x",
    "00400000-00452000 r-xp 00000000 08:02 abc /x",           /* bad inode */
    "00400000-00452000 r-xp 00000000 08:02 12x /x",
    "00400000-00452000 r-xp 00000000 08:02 -1 /x",
    "00400000-00452000 r-xp 00000000 08:02 99999999999999999999 /x",
    "00000000000400000-00452000 r-xp 00000000 08:02 1 /x",    /* 17 hex digits */
    "00400000-00000000000452000 r-xp 00000000 08:02 1 /x",
    "00400000-00452000 r-xp 00000000000000000 08:02 1 /x",
    "00400000-00452000 r-xp 00000000 00000000000000008:02 1 /x",
};

START_TEST(maps_line_bad)
{
    struct ml_vma v;
    memset(&v, 0xab, sizeof v);
    struct ml_vma before = v;
    ck_assert_msg(ml_parse_maps_line(maps_bad[_i], &v) == -1, "accepted '%s'", maps_bad[_i]);
    ck_assert_mem_eq(&v, &before, sizeof v);
}
END_TEST

START_TEST(maps_line_null)
{
    struct ml_vma v;
    ck_assert_int_eq(ml_parse_maps_line(NULL, &v), -1);
}
END_TEST

/* ====================================================================== */
/* procfs.c: the maps iterator and ml_maps_find                            */
/* ====================================================================== */

/* Point an iterator at any descriptor (a fixture, a memfd) instead of
 * /proc/<pid>/maps: the same fields ml_maps_open() sets. */
static void iter_on_fd(struct ml_maps_iter *it, int fd)
{
    ck_assert_int_ge(fd, 0);
    it->fd = fd;
    it->len = it->pos = 0;
    it->eof = false;
}

static int memfd_with(const char *text, size_t len)
{
    int fd = memfd_create("maps", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

START_TEST(iter_fixture_files)
{
    /* the fixtures parsed line by line, and through the iterator (maps_special
     * is 15 KiB: the 8 KiB buffer is refilled with lines cut at its end) */
    static char text[32 * 1024];
    const char *files[] = {"maps_self.txt", "maps_special.txt"};
    for (size_t k = 0; k < ARRAY_LEN(files); k++) {
        read_fixture(files[k], text, sizeof text);
        size_t lines = 0;
        struct ml_vma v;
        for (char *line = text; *line; lines++) {
            char *nl = strchr(line, '\n');
            ck_assert_ptr_nonnull(nl);
            *nl = '\0';
            ck_assert_msg(ml_parse_maps_line(line, &v) == 0, "%s: refused '%s'", files[k], line);
            line = nl + 1;
        }

        char path[128];
        snprintf(path, sizeof path, "fixtures/%s", files[k]);
        struct ml_maps_iter it;
        iter_on_fd(&it, open(path, O_RDONLY));
        size_t count = 0, specials = 0;
        uintptr_t last_start = 0;
        int r;
        while ((r = ml_maps_next(&it, &v)) == 1) {
            ck_assert_uint_gt(v.start, last_start);
            last_start = v.start;
            if (strcmp(v.path, "/tmp/mlcap/my data file") == 0 ||
                strcmp(v.path, "/tmp/mlcap/gone (deleted)") == 0 ||
                strcmp(v.path, "/memfd:ml test (deleted)") == 0)
                specials++;
            count++;
        }
        ck_assert_int_eq(r, 0);
        ck_assert_uint_eq(count, lines);
        ck_assert_uint_eq(specials, k == 1 ? 3 : 0);
        ck_assert_str_eq(v.path, "[vsyscall]");      /* the last line of both */
        ml_maps_close(&it);
        ck_assert_int_eq(it.fd, -1);
    }
}
END_TEST

START_TEST(iter_last_line_without_newline)
{
    const char text[] = "1000-2000 r--p 00000000 00:00 0\n3000-4000 rw-p 00000000 00:00 0 [x]";
    struct ml_maps_iter it;
    struct ml_vma v;
    iter_on_fd(&it, memfd_with(text, sizeof text - 1));
    ck_assert_int_eq(ml_maps_next(&it, &v), 1);
    ck_assert_uint_eq(v.start, 0x1000);
    ck_assert_int_eq(ml_maps_next(&it, &v), 1);
    ck_assert_uint_eq(v.start, 0x3000);
    ck_assert_str_eq(v.path, "[x]");
    ck_assert_int_eq(ml_maps_next(&it, &v), 0);
    ck_assert_int_eq(ml_maps_next(&it, &v), 0);     /* and stays at the end */
    ml_maps_close(&it);
    ml_maps_close(&it);                             /* twice is harmless */
}
END_TEST

START_TEST(iter_empty_and_bad)
{
    struct ml_maps_iter it;
    struct ml_vma v;
    iter_on_fd(&it, memfd_with("", 0));
    ck_assert_int_eq(ml_maps_next(&it, &v), 0);
    ml_maps_close(&it);

    const char text[] = "1000-2000 r--p 00000000 00:00 0\nnot a maps line\n";
    iter_on_fd(&it, memfd_with(text, sizeof text - 1));
    ck_assert_int_eq(ml_maps_next(&it, &v), 1);
    errno = 0;
    ck_assert_int_eq(ml_maps_next(&it, &v), -1);
    ck_assert_int_eq(errno, EPROTO);
    ml_maps_close(&it);
}
END_TEST

START_TEST(iter_line_as_long_as_the_buffer)
{
    /* the buffer holds a line of sizeof buf - 2 characters and its '\n'; one
     * more character is EFBIG, not a silent cut */
    struct ml_maps_iter it;
    struct ml_vma v;
    const size_t max = sizeof it.buf - 2;
    static char text[3 * sizeof it.buf];
    const char head[] = "1000-2000 r--p 00000000 00:00 0 /";
    size_t n = 0;
    for (size_t len = max; len <= max + 1; len++) {
        memcpy(text + n, head, sizeof head - 1);
        memset(text + n + sizeof head - 1, 'p', len - (sizeof head - 1));
        n += len;
        text[n++] = '\n';
    }
    iter_on_fd(&it, memfd_with(text, n));
    ck_assert_int_eq(ml_maps_next(&it, &v), 1);
    ck_assert_uint_eq(strlen(v.path), sizeof v.path - 1);
    errno = 0;
    ck_assert_int_eq(ml_maps_next(&it, &v), -1);
    ck_assert_int_eq(errno, EFBIG);
    ml_maps_close(&it);
}
END_TEST

START_TEST(iter_self)
{
    struct ml_maps_iter it;
    struct ml_vma v;
    ck_assert_int_eq(ml_maps_open(&it, 0), 0);
    int count = 0, stacks = 0, r;
    uintptr_t last_end = 0;
    while ((r = ml_maps_next(&it, &v)) == 1) {
        ck_assert_uint_lt(v.start, v.end);
        ck_assert_uint_ge(v.start, last_end);       /* sorted, no overlap */
        last_end = v.end;
        stacks += strcmp(v.path, "[stack]") == 0;
        count++;
    }
    ck_assert_int_eq(r, 0);
    ck_assert_int_gt(count, 5);
    ck_assert_int_eq(stacks, 1);
    ml_maps_close(&it);

    errno = 0;
    ck_assert_int_eq(ml_maps_open(&it, INT_MAX), -1);
    ck_assert_int_eq(errno, ENOENT);
    ml_maps_close(&it);
}
END_TEST

enum { NREGIONS = 400, MAX_VMAS = 2048 };
static char *regions[NREGIONS];

static void map_regions(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < NREGIONS; i++) {
        int prot = i % 2 ? PROT_READ : PROT_READ | PROT_WRITE;
        regions[i] = mmap(NULL, page, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ck_assert_ptr_ne(regions[i], MAP_FAILED);
    }
}

START_TEST(iter_many_regions)
{
    /* 400 one-page mappings that cannot merge: a maps file of 20+ KiB, read
     * through the 8 KiB buffer; each region is in exactly one VMA */
    map_regions();
    static int seen[NREGIONS];
    struct ml_maps_iter it;
    struct ml_vma v;
    ck_assert_int_eq(ml_maps_open(&it, 0), 0);
    int count = 0, r;
    while ((r = ml_maps_next(&it, &v)) == 1) {
        count++;
        for (int i = 0; i < NREGIONS; i++)
            if ((uintptr_t)regions[i] >= v.start && (uintptr_t)regions[i] < v.end)
                seen[i]++;
    }
    ml_maps_close(&it);
    ck_assert_int_eq(r, 0);
    ck_assert_int_ge(count, NREGIONS);
    for (int i = 0; i < NREGIONS; i++)
        ck_assert_msg(seen[i] == 1, "region %d (%p) seen %d times", i, (void *)regions[i], seen[i]);
}
END_TEST

START_TEST(iter_matches_whole_file)
{
    /* the iterator and one big read of the same file give the same VMAs (no
     * assertion between the two reads: it could move the heap) */
    map_regions();
    static char text[256 * 1024];
    static struct ml_vma whole[MAX_VMAS], walked[MAX_VMAS];
    ssize_t len = ml_read_file("/proc/self/maps", text, sizeof text);
    struct ml_maps_iter it;
    int opened = ml_maps_open(&it, 0), nwalked = 0, r;
    while (nwalked < MAX_VMAS && (r = ml_maps_next(&it, &walked[nwalked])) == 1)
        nwalked++;
    ml_maps_close(&it);

    ck_assert_int_gt(len, 2 * (ssize_t)sizeof it.buf);
    ck_assert_int_eq(opened, 0);
    ck_assert_int_eq(r, 0);
    int nwhole = 0;
    for (char *line = text; *line && nwhole < MAX_VMAS; nwhole++) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        ck_assert_int_eq(ml_parse_maps_line(line, &whole[nwhole]), 0);
        line = nl + 1;
    }
    ck_assert_int_eq(nwalked, nwhole);
    for (int i = 0; i < nwhole; i++)
        ck_assert_msg(memcmp(&whole[i], &walked[i], sizeof whole[i]) == 0,
                      "VMA %d differs: %lx %s / %lx %s", i, (unsigned long)whole[i].start,
                      whole[i].path, (unsigned long)walked[i].start, walked[i].path);
}
END_TEST

static void a_function(void) { }

START_TEST(find_stack)
{
    int local = 1;
    struct ml_vma v;
    ck_assert_int_eq(ml_maps_find(0, (uintptr_t)&local, &v), 1);
    ck_assert_uint_le(v.start, (uintptr_t)&local);
    ck_assert_uint_gt(v.end, (uintptr_t)&local);
    ck_assert_str_eq(v.path, "[stack]");
    ck_assert_str_eq(v.perms, "rw-p");
}
END_TEST

START_TEST(find_function)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt(n, 0);
    exe[n] = '\0';
    struct ml_vma v;
    uintptr_t addr = (uintptr_t)a_function;
    ck_assert_int_eq(ml_maps_find(0, addr, &v), 1);
    ck_assert_uint_le(v.start, addr);
    ck_assert_uint_gt(v.end, addr);
    ck_assert_str_eq(v.perms, "r-xp");
    ck_assert_str_eq(v.path, exe);
    ck_assert_uint_gt(v.inode, 0);
}
END_TEST

START_TEST(find_malloc)
{
    char *p = malloc(64);
    ck_assert_ptr_nonnull(p);
    struct ml_vma v;
    ck_assert_int_eq(ml_maps_find(0, (uintptr_t)p, &v), 1);
    ck_assert_str_eq(v.perms, "rw-p");
    /* glibc serves small blocks of the main thread from brk(): [heap]; an
     * instrumented build (ASan, valgrind) may use an anonymous mapping */
    ck_assert_msg(strcmp(v.path, "[heap]") == 0 || v.path[0] == '\0', "malloc(64) in '%s'", v.path);
    free(p);
}
END_TEST

START_TEST(find_mmap)
{
    size_t len = 4 * MiB;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    struct ml_vma v;
    ck_assert_int_eq(ml_maps_find(0, (uintptr_t)p + len - 1, &v), 1);
    ck_assert_uint_le(v.start, (uintptr_t)p);
    ck_assert_uint_ge(v.end, (uintptr_t)p + len);
    ck_assert_str_eq(v.perms, "rw-p");
    ck_assert_str_eq(v.path, "");
    ck_assert_uint_eq(v.inode, 0);

    ck_assert_int_eq(munmap(p, len), 0);
    ck_assert_int_eq(ml_maps_find(0, (uintptr_t)p + len / 2, &v), 0);
    ck_assert_int_eq(ml_maps_find(0, 0, &v), 0);                    /* page zero */
    errno = 0;
    ck_assert_int_eq(ml_maps_find(INT_MAX, (uintptr_t)&v, &v), -1);
    ck_assert_int_eq(errno, ENOENT);
}
END_TEST

/* ====================================================================== */
/* usage.c                                                                 */
/* ====================================================================== */

START_TEST(usage_counts_faults)
{
    struct ml_usage before, after;
    size_t len = 1 * MiB;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(p, MAP_FAILED);
    madvise(p, len, MADV_NOHUGEPAGE);     /* one fault per page */
    ml_usage_now(&before);
    ck_assert_int_gt(before.minflt, 0);
    ck_assert_int_ge(before.majflt, 0);
    ck_assert_int_gt(before.maxrss_kb, 0);
    for (size_t i = 0; i < len; i += 4096)
        p[i] = 1;
    ml_usage_now(&after);
    ck_assert_int_ge(after.minflt - before.minflt, 16);
    ck_assert_int_ge(after.maxrss_kb, before.maxrss_kb);
    munmap(p, len);

    /* getrusage and /proc/self/stat count the same faults */
    struct ml_stat st;
    ml_usage_now(&before);
    ck_assert_int_eq(ml_read_stat(0, &st), 0);
    ck_assert_int_le(labs((long)st.minflt - before.minflt), 64);
}
END_TEST

START_TEST(snapshot_plausible)
{
    struct ml_snapshot s;
    memset(&s, 0xab, sizeof s);
    ml_snapshot_now(&s);
    ck_assert_int_gt(s.ru.minflt, 0);
    ck_assert_int_gt(s.ru.maxrss_kb, 0);
    ck_assert_int_gt(s.st.vm_rss_kb, 0);
    ck_assert_int_ge(s.st.vm_size_kb, s.st.vm_rss_kb);
    ck_assert_int_gt(s.ro.rss_kb, 0);
    ck_assert_int_le(s.ro.pss_kb, s.ro.rss_kb);
    ck_assert_int_ge(s.ro.anonymous_kb, 0);
}
END_TEST

/* ====================================================================== */
/* report.c                                                                */
/* ====================================================================== */

/* A fake grader: a SOCK_SEQPACKET pair, the lab's end named in MEMLAB_FD. */
struct channel {
    int grader, lab;
};

static struct channel open_channel(void)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char fd[16];
    snprintf(fd, sizeof fd, "%d", sv[1]);
    setenv("MEMLAB_FD", fd, 1);
    unsetenv("MEMLAB_PAUSE");
    return (struct channel){.grader = sv[0], .lab = sv[1]};
}

static void expect_packet(int fd, const char *want)
{
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    ck_assert_msg(n >= 0, "no packet while waiting for '%s': %s", want, strerror(errno));
    buf[n > 0 ? n : 0] = '\0';     /* (gcc does not know the assertion ends the test) */
    ck_assert_str_eq(buf, want);
}

/* A checkpoint packet "cp <name> <fd>" with its answer pipe attached
 * (SCM_RIGHTS); returns the pipe's write end, for the "go". */
static int expect_checkpoint(int fd, const char *name)
{
    char buf[128];
    union {
        struct cmsghdr align;
        char ctl[CMSG_SPACE(sizeof(int))];
    } u;
    struct iovec iov = {buf, sizeof buf - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.ctl,
                        .msg_controllen = sizeof u.ctl};
    ssize_t n = recvmsg(fd, &mh, 0);
    ck_assert_msg(n > 0, "no checkpoint packet for '%s': %s", name, strerror(errno));
    buf[n > 0 ? n : 0] = '\0';
    char want[96];
    snprintf(want, sizeof want, "cp %s ", name);
    ck_assert_msg(strncmp(buf, want, strlen(want)) == 0, "packet '%s', want '%s<fd>'", buf, want);
    ck_assert_msg(buf[strlen(want)] >= '0' && buf[strlen(want)] <= '9', "no fd number in '%s'", buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    ck_assert_msg(c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS,
                  "checkpoint '%s' came without its answer pipe", name);
    int reply;
    memcpy(&reply, CMSG_DATA(c), sizeof reply);
    return reply;
}

/* 1 when pid sits in a receive system call (or read(), on its answer pipe), 0 when it does not within 2 s,
 * -1 when /proc/<pid>/syscall is unreadable (no ptrace access). */
static int wait_in_recv(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    for (int i = 0; i < 200; i++) {
        if (ml_read_file(path, buf, sizeof buf) < 0)
            return -1;
        char *end;
        long nr = strtol(buf, &end, 10);
        if (end != buf && (nr == SYS_recvfrom || nr == SYS_recvmsg || nr == SYS_read))
            return 1;
        usleep(10 * 1000);
    }
    return 0;
}

static char *lab_argv[] = {"/somewhere/labs/t/t", NULL};

static void child_silent_lab(void *arg)
{
    ml_init("t", 1, lab_argv);
    if (strcmp(ml_progname, "t") != 0)
        _exit(10);
    if (ml_graded())
        _exit(11);
    errno = 0;
    ml_report_long("x.y", -5);
    ml_report_double("d", 0.5);
    ml_report_addr("a", &arg);
    ml_report_str("s", "text");
    ml_checkpoint("here");
    ml_checkpoint("again");
    _exit(0);
}

static const char *const no_grader_env[] = {NULL, ""};

START_TEST(report_without_grader)
{
    /* MEMLAB_FD unset or empty: silent, and checkpoints return at once */
    if (no_grader_env[_i])
        setenv("MEMLAB_FD", no_grader_env[_i], 1);
    else
        unsetenv("MEMLAB_FD");
    unsetenv("MEMLAB_PAUSE");
    char out[1024];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int status = run_captured(child_silent_lab, NULL, out, sizeof out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_exited(status, 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 2);
}
END_TEST

static void child_protocol(void *arg)
{
    const struct channel *ch = arg;
    close(ch->grader);
    ml_init("t", 1, lab_argv);
    if (!ml_graded())
        _exit(10);
    if (!(fcntl(ch->lab, F_GETFD) & FD_CLOEXEC))
        _exit(11);
    ml_report_long("x.y", -5);
    ml_report_long("min", LLONG_MIN);
    ml_report_addr("a", (void *)0x7f001234);
    ml_report_double("d", -2.25);
    ml_report_str("s", "a\nb");
    ml_report_str("crlf", "l1\r\nl2");
    char longtext[400];
    memset(longtext, 'x', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    ml_report_str("long", longtext);
    ml_checkpoint("here");
    _exit(ml_graded() ? 0 : 12);
}

START_TEST(report_protocol)
{
    struct channel ch = open_channel();
    int out = capture_file();
    pid_t pid = spawn(child_protocol, &ch, out);
    close(ch.lab);

    expect_packet(ch.grader, "hello memlab/1 t");
    expect_packet(ch.grader, "fig x.y -5");
    expect_packet(ch.grader, "fig min -9223372036854775808");
    expect_packet(ch.grader, "fig a 0x7f001234");
    expect_packet(ch.grader, "fig d -2.25");
    expect_packet(ch.grader, "fig s a b");
    expect_packet(ch.grader, "fig crlf l1  l2");

    char buf[512];
    ssize_t n = recv(ch.grader, buf, sizeof buf - 1, 0);
    ck_assert_int_gt(n, 9);
    ck_assert_int_le(n, 320);                       /* the contract's limit */
    buf[n] = '\0';
    ck_assert_int_eq(strncmp(buf, "fig long xxx", 12), 0);
    ck_assert_uint_eq(strspn(buf + 9, "x"), (size_t)n - 9);

    int reply = expect_checkpoint(ch.grader, "here");

    /* the lab waits in read() on its answer pipe; packets on the channel do not
     * release it */
    ck_assert_int_ne(wait_in_recv(pid), 0);
    ck_assert_int_eq(send(ch.grader, "go", 2, 0), 2);
    usleep(20 * 1000);
    ck_assert_int_eq(waitpid(pid, NULL, WNOHANG), 0);
    ck_assert_int_ne(wait_in_recv(pid), 0);

    ck_assert_int_eq(write(reply, "go", 2), 2);
    close(reply);
    int status = reap(pid);
    char text[1024];
    read_captured(out, text, sizeof text);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "lab status %#x, output '%s'", (unsigned)status, text);
    ck_assert_str_eq(text, "");
    /* nothing after the checkpoint: the end of the channel (reset, since the
     * lab left our "go" on the channel unread) */
    n = recv(ch.grader, buf, sizeof buf, MSG_DONTWAIT);
    ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET), "recv %zd: %s", n, strerror(errno));
}
END_TEST

static void child_checkpoint_then_lose_grader(void *arg)
{
    const struct channel *ch = arg;
    close(ch->grader);
    ml_init("t", 1, lab_argv);
    if (!ml_graded())
        _exit(10);
    errno = ENOMEM;                 /* stale: must not appear in the warning */
    ml_checkpoint("wait");
    if (ml_graded())
        _exit(11);
    ml_report_long("after", 1);     /* silent now */
    ml_checkpoint("again");         /* returns at once */
    _exit(0);
}

START_TEST(report_grader_closes_at_checkpoint)
{
    struct channel ch = open_channel();
    int out = capture_file();
    pid_t pid = spawn(child_checkpoint_then_lose_grader, &ch, out);
    close(ch.lab);
    expect_packet(ch.grader, "hello memlab/1 t");
    close(expect_checkpoint(ch.grader, "wait"));   /* closed without an answer */
    close(ch.grader);
    int status = reap(pid);
    char text[1024];
    read_captured(out, text, sizeof text);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "lab status %#x, output '%s'", (unsigned)status, text);
    assert_contains(text, "lost the grader");
    assert_lacks(text, "ENOMEM");
}
END_TEST

struct lose_arg {
    struct channel ch;
    bool report_first;          /* a figure first, else the checkpoint at once */
};

static void child_lose_grader_before(void *arg)
{
    const struct lose_arg *a = arg;
    close(a->ch.grader);
    ml_init("t", 1, lab_argv);
    if (!ml_graded())
        _exit(10);
    struct pollfd pfd = {.fd = a->ch.lab, .events = POLLIN};
    if (poll(&pfd, 1, 3000) != 1 || !(pfd.revents & POLLHUP))
        _exit(11);                  /* the grader did not close */
    if (a->report_first)
        ml_report_long("x", 1);     /* send() to a closed peer: no SIGPIPE */
    ml_checkpoint("late");
    _exit(ml_graded() ? 12 : 0);
}

START_TEST(report_grader_closed_before)
{
    /* the grader's end closed before a figure (row 0) or a checkpoint (row 1) */
    struct lose_arg arg = {open_channel(), _i == 0};
    int out = capture_file();
    pid_t pid = spawn(child_lose_grader_before, &arg, out);
    close(arg.ch.lab);
    expect_packet(arg.ch.grader, "hello memlab/1 t");
    close(arg.ch.grader);
    int status = reap(pid);
    char text[1024];
    read_captured(out, text, sizeof text);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "lab status %#x, output '%s'", (unsigned)status, text);
    assert_contains(text, _i == 0 ? "lost the grader (send)" : "lost the grader (sendmsg)");
    ck_assert_ptr_eq(strchr(text, '\n'), text + strlen(text) - 1);   /* warned once */
}
END_TEST

static void child_not_graded(void *arg)
{
    errno = ENOMEM;             /* stale: must not appear in the warning */
    ml_init("t", 1, lab_argv);
    if (ml_graded())
        _exit(10);
    ml_report_long("x", 1);
    ml_checkpoint("cp");
    _exit(0);
}

static const char *const bad_channels[] = {
    "a pipe", "a SOCK_STREAM socket", "a closed descriptor", "not a number", "negative",
};

START_TEST(report_memlab_fd_not_a_channel)
{
    int fds[2] = {-1, -1};
    char val[32];
    switch (_i) {
    case 0:
        ck_assert_int_eq(pipe(fds), 0);
        snprintf(val, sizeof val, "%d", fds[1]);
        break;
    case 1:
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
        snprintf(val, sizeof val, "%d", fds[1]);
        break;
    case 2:
        ck_assert_int_eq(fcntl(999, F_GETFD), -1);
        snprintf(val, sizeof val, "999");
        break;
    case 3:
        snprintf(val, sizeof val, "three");
        break;
    default:
        snprintf(val, sizeof val, "-1");
        break;
    }
    setenv("MEMLAB_FD", val, 1);
    unsetenv("MEMLAB_PAUSE");
    char out[1024];
    int status = run_captured(child_not_graded, NULL, out, sizeof out);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "%s: status %#x, output '%s'", bad_channels[_i], (unsigned)status, out);
    assert_contains(out, "MEMLAB_FD");
    assert_contains(out, "running without a grader");
    assert_lacks(out, "ENOMEM");
    ck_assert_ptr_eq(strchr(out, '\n'), out + strlen(out) - 1);     /* one line */
    if (fds[0] >= 0) {          /* nothing was written to the wrong descriptor */
        char buf[64];
        ck_assert_int_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
        ck_assert_int_eq(read(fds[0], buf, sizeof buf), -1);
        ck_assert_int_eq(errno, EAGAIN);
    }
}
END_TEST

static void child_pause(void *arg)
{
    setsid();                   /* no controlling terminal: /dev/tty fails */
    setenv("MEMLAB_PAUSE", "1", 1);
    ml_init("t", 1, lab_argv);
    ml_checkpoint("look");
    _exit(0);
}

START_TEST(report_pause_without_tty)
{
    /* MEMLAB_PAUSE=1 with no terminal: the lab stops itself (SIGSTOP) at the
     * checkpoint and goes on after SIGCONT */
    unsetenv("MEMLAB_FD");
    int out = capture_file();
    pid_t pid = spawn(child_pause, NULL, out);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, WUNTRACED), pid);
    ck_assert_msg(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP, "status %#x", (unsigned)status);
    ck_assert_int_eq(kill(pid, SIGCONT), 0);
    status = reap(pid);
    assert_exited(status, 0);
    char text[1024];
    read_captured(out, text, sizeof text);
    assert_contains(text, "stopped at checkpoint 'look'");
}
END_TEST

static const char *const bad_names[] = {
    "Bad Name", "", "a b", "a-b", "UPPER", "caf\xc3\xa9", "x/y",
    "a1234567890123456789012345678901234567890123456789012345678901234",  /* 65 */
};

START_TEST(report_bad_name_exits_1)
{
    quiet();
    unsetenv("MEMLAB_FD");
    ml_report_long(bad_names[_i], 1);
}
END_TEST

START_TEST(checkpoint_bad_name_exits_1)
{
    quiet();
    unsetenv("MEMLAB_FD");
    ml_checkpoint("Bad Name");
}
END_TEST

static void child_bad_name(void *arg)
{
    ml_init("t", 1, lab_argv);
    errno = ENOMEM;             /* stale: must not appear in the message */
    ml_report_str("Bad Name", "v");
    _exit(0);
}

START_TEST(report_bad_name_message)
{
    unsetenv("MEMLAB_FD");
    char out[1024];
    int status = run_captured(child_bad_name, NULL, out, sizeof out);
    assert_exited(status, 1);
    assert_contains(out, "t: figure or checkpoint name 'Bad Name'");
    assert_lacks(out, "ENOMEM");
}
END_TEST

START_TEST(report_longest_name)
{
    unsetenv("MEMLAB_FD");
    ml_report_long("a12345678901234567890123456789012345678901234567890123456789012_", 1);   /* 64 */
    ml_report_long("0._", 1);
}
END_TEST

/* ====================================================================== */
/* The table: every test, in the TCase of the file it covers               */
/* ====================================================================== */

struct entry {
    const char *tcase;
    const TTest *const *test;
    int exit_status;            /* expected exit(); 0 for an ordinary test */
    size_t rows;                /* loop test over a table of this many rows */
};

#define TEST(tc, t) {tc, &t, 0, 1}
#define EXIT_TEST(tc, t, status) {tc, &t, status, 1}
#define TABLE_TEST(tc, t, table) {tc, &t, 0, ARRAY_LEN(table)}
#define TABLE_EXIT_TEST(tc, t, table, status) {tc, &t, status, ARRAY_LEN(table)}

static const struct entry tests[] = {
    EXIT_TEST("error", die_exits_1, 1),
    TEST("error", die_names_errno),
    TEST("error", die_without_errno),
    TEST("error", die_child_leaves_stdio_alone),
    TEST("error", warn_goes_on),
    TEST("error", usage_error_exits_2),
    TABLE_TEST("error", errno_name, errno_names),

    TABLE_TEST("args", try_parse_size_ok, sizes_ok),
    TABLE_TEST("args", try_parse_size_bad, sizes_bad),
    TEST("args", try_parse_size_null),
    TABLE_TEST("args", try_parse_long, longs),
    TEST("args", try_parse_long_null),
    TEST("args", parse_good_values),
    TABLE_EXIT_TEST("args", parse_size_exits_2, bad_size_args, 2),
    TABLE_EXIT_TEST("args", parse_long_exits_2, bad_long_args, 2),
    TABLE_EXIT_TEST("args", parse_fraction_exits_2, bad_fraction_args, 2),
    TEST("args", parse_errors_name_the_option),

    TEST("procfs", read_file_normal),
    TEST("procfs", read_file_exact_fit),
    TEST("procfs", read_file_too_small),
    TEST("procfs", read_file_empty),
    TEST("procfs", read_file_errors),
    TEST("procfs", read_file_proc),
    TABLE_TEST("procfs", stat_fixture, stat_fixtures),
    TEST("procfs", stat_synthetic),
    TABLE_TEST("procfs", stat_malformed, stat_bad),
    TEST("procfs", stat_null),
    TEST("procfs", stat_every_truncation),
    TEST("procfs", read_stat_self),
    TEST("procfs", status_fixture),
    TEST("procfs", status_missing_keys),
    TEST("procfs", status_kernel_thread),
    TABLE_TEST("procfs", status_malformed, status_bad),
    TEST("procfs", status_null),
    TEST("procfs", read_status_self),
    TEST("procfs", rollup_fixture),
    TEST("procfs", rollup_cut_short),
    TABLE_TEST("procfs", rollup_malformed, rollup_bad),
    TEST("procfs", read_rollup_self),
    TABLE_TEST("procfs", maps_line_ok, maps_ok),
    TEST("procfs", maps_line_long_path),
    TABLE_TEST("procfs", maps_line_bad, maps_bad),
    TEST("procfs", maps_line_null),
    TEST("procfs", iter_fixture_files),
    TEST("procfs", iter_last_line_without_newline),
    TEST("procfs", iter_empty_and_bad),
    TEST("procfs", iter_line_as_long_as_the_buffer),
    TEST("procfs", iter_self),
    TEST("procfs", iter_many_regions),
    TEST("procfs", iter_matches_whole_file),
    TEST("procfs", find_stack),
    TEST("procfs", find_function),
    TEST("procfs", find_malloc),
    TEST("procfs", find_mmap),

    TEST("usage", usage_counts_faults),
    TEST("usage", snapshot_plausible),

    TABLE_TEST("report", report_without_grader, no_grader_env),
    TEST("report", report_protocol),
    TEST("report", report_grader_closes_at_checkpoint),
    {"report", &report_grader_closed_before, 0, 2},
    TABLE_TEST("report", report_memlab_fd_not_a_channel, bad_channels),
    TEST("report", report_pause_without_tty),
    TABLE_EXIT_TEST("report", report_bad_name_exits_1, bad_names, 1),
    EXIT_TEST("report", checkpoint_bad_name_exits_1, 1),
    TEST("report", report_bad_name_message),
    TEST("report", report_longest_name),
};

static const char *const tcases[] = {"error", "args", "procfs", "usage", "report"};

int main(void)
{
    Suite *s = suite_create("common");
    size_t placed = 0;
    for (size_t c = 0; c < ARRAY_LEN(tcases); c++) {
        TCase *tc = tcase_create(tcases[c]);
        for (size_t i = 0; i < ARRAY_LEN(tests); i++) {
            const struct entry *e = &tests[i];
            if (strcmp(e->tcase, tcases[c]) != 0)
                continue;
            if (e->exit_status)
                tcase_add_loop_exit_test(tc, *e->test, e->exit_status, 0, (int)e->rows);
            else
                tcase_add_loop_test(tc, *e->test, 0, (int)e->rows);
            placed++;
        }
        suite_add_tcase(s, tc);
    }
    if (placed != ARRAY_LEN(tests)) {
        fprintf(stderr, "test_common: a test names a TCase that is not in tcases[]\n");
        return 2;
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);      /* CK_VERBOSITY=verbose lists every test */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
