/* report.c - the lab's side of the grader contract (docs/contract.md).
 *
 * The grader hands the lab one end of an AF_UNIX SOCK_SEQPACKET socket and
 * names its descriptor in MEMLAB_FD. Each message is one line of text:
 *     hello memlab/1 <lab>      once, from ml_init()
 *     fig <name> <value>        a figure the lab measured
 *     cp <name> <fd>            a checkpoint, with the write end of a pipe of its
 *                               own attached: the sender waits reading the pipe
 *                               (its descriptor <fd>) until the grader writes "go"
 * The kernel attaches the sender's real pid to every message (SCM_CREDENTIALS),
 * so the grader knows which process, parent or child, is at a checkpoint and
 * reads its /proc files itself while it waits. */
#include "memlab.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <unistd.h>

static int grader_fd = -1;
static char stdout_buf[4096];   /* static: stdio must not malloc (see memlab.h) */

static bool valid_name(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.';
        if (!ok)
            return false;
    }
    return n > 0 && n <= 64;
}

static void disconnect(const char *why)
{
    if (grader_fd >= 0) {
        ml_warn("lost the grader (%s); going on without it", why);
        close(grader_fd);
        grader_fd = -1;
    }
}

static void send_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void send_line(const char *fmt, ...)
{
    if (grader_fd < 0)
        return;
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    while (send(grader_fd, msg, (size_t)n, MSG_NOSIGNAL) < 0) {
        if (errno != EINTR) {
            disconnect("send");
            return;
        }
    }
}

void ml_init(const char *lab, int argc, char **argv)
{
    (void)argc;
    const char *slash = argv && argv[0] ? strrchr(argv[0], '/') : NULL;
    ml_progname = slash ? slash + 1 : (argv && argv[0] ? argv[0] : lab);
    setvbuf(stdout, stdout_buf, _IOLBF, sizeof stdout_buf);

    const char *env = getenv("MEMLAB_FD");
    if (env == NULL || *env == '\0')
        return;
    long fd;
    const char *err;
    if (ml_try_parse_long(env, 0, 1 << 20, &fd, &err) < 0) {
        errno = 0;
        ml_warn("MEMLAB_FD='%s' is %s; running without a grader", env, err);
        return;
    }
    struct stat st;
    int type = 0;
    socklen_t len = sizeof type;
    errno = 0;                  /* the warning names errno only if a call failed */
    if (fstat((int)fd, &st) < 0 || !S_ISSOCK(st.st_mode) ||
        getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_SEQPACKET) {
        ml_warn("MEMLAB_FD=%ld is not the grader's socket; running without a grader", fd);
        return;
    }
    grader_fd = (int)fd;
    fcntl(grader_fd, F_SETFD, FD_CLOEXEC);     /* programs we exec don't get it */
    send_line("hello memlab/1 %s", lab);
}

bool ml_graded(void)
{
    return grader_fd >= 0;
}

static void check_name(const char *name)
{
    if (!valid_name(name)) {
        errno = 0;              /* a bad name, not a failed call: no errno part */
        ml_die("figure or checkpoint name '%s': use 1-64 characters from a-z 0-9 _ .", name);
    }
}

void ml_report_long(const char *name, long long value)
{
    check_name(name);
    send_line("fig %s %lld", name, value);
}

void ml_report_double(const char *name, double value)
{
    check_name(name);
    send_line("fig %s %.17g", name, value);
}

void ml_report_addr(const char *name, const void *addr)
{
    check_name(name);
    send_line("fig %s %#lx", name, (unsigned long)(uintptr_t)addr);
}

void ml_report_str(const char *name, const char *value)
{
    check_name(name);
    char clean[200];
    size_t i = 0;
    for (; value && value[i] && i < sizeof clean - 1; i++)
        clean[i] = (value[i] == '\n' || value[i] == '\r') ? ' ' : value[i];
    clean[i] = '\0';
    send_line("fig %s %s", name, clean);
}

static void pause_here(const char *name)
{
    const char *p = getenv("MEMLAB_PAUSE");
    if (p == NULL || *p == '\0' || strcmp(p, "0") == 0)
        return;
    int pid = (int)getpid();
    fflush(stdout);
    int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty >= 0) {
        dprintf(tty, "\n[%s: paused at checkpoint '%s'. In another terminal look at "
                "/proc/%d/status, /proc/%d/smaps_rollup or /proc/%d/maps; press Enter to go on]\n",
                ml_progname, name, pid, pid, pid);
        char c;
        while (read(tty, &c, 1) == 1 && c != '\n')
            ;
        close(tty);
    } else {
        fprintf(stderr, "[%s: stopped at checkpoint '%s'; look at /proc/%d/, then: kill -CONT %d]\n",
                ml_progname, name, pid, pid);
        raise(SIGSTOP);
    }
}

/* Send "cp <name> <fd>" with the write end of a fresh pipe attached
 * (SCM_RIGHTS); <fd> is our read end's number, so the grader can see that we
 * are blocked reading exactly it. The grader answers "go" into that pipe: the
 * answer reaches this process and no other, however many wait at once. */
static int send_checkpoint(const char *name, int *reply_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    char msg[96];
    int n = snprintf(msg, sizeof msg, "cp %s %d", name, p[0]);
    struct iovec iov = {msg, (size_t)n};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &p[1], sizeof(int));
    ssize_t sent;
    while ((sent = sendmsg(grader_fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    int err = errno;
    close(p[1]);
    if (sent < 0) {
        close(p[0]);
        errno = err;
        return -1;
    }
    *reply_fd = p[0];
    return 0;
}

void ml_checkpoint(const char *name)
{
    check_name(name);
    fflush(stdout);
    if (grader_fd < 0) {
        pause_here(name);
        return;
    }
    int reply_fd;
    if (send_checkpoint(name, &reply_fd) < 0) {
        disconnect("sendmsg");
        return;
    }
    char reply[16];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(reply_fd, reply + got, sizeof reply - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;              /* the grader closed it without answering: it is gone */
        got += (size_t)n;
        reply[got] = '\0';
        if (strcmp(reply, "go") == 0 || got == sizeof reply - 1)
            break;
    }
    close(reply_fd);
    if (got == 0) {
        errno = 0;
        disconnect("the grader closed the checkpoint's answer pipe");
    }
}
