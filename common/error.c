/* error.c - error messages that name the failing call and the errno. */
#include "memlab.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *ml_progname = "memlab";

const char *ml_errno_name(int err)
{
    const char *name = strerrorname_np(err);    /* glibc >= 2.32 */
    return name ? name : "E?";
}

/* flush_stdout: print what stdout holds first, so that the two streams stay in
 * order; never in a forked child, whose stdout buffer is a copy of the parent's
 * (the parent writes that text itself: flushing it here would print it twice). */
static void vmessage(int err, bool flush_stdout, const char *fmt, va_list ap)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%s: ", ml_progname);
    if (n < 0 || (size_t)n >= sizeof msg)
        n = 0;
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    if (flush_stdout)
        fflush(stdout);
    if (err)
        fprintf(stderr, "%s: %s %s\n", msg, ml_errno_name(err), strerror(err));
    else
        fprintf(stderr, "%s\n", msg);
}

void ml_die(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vmessage(err, true, fmt, ap);
    va_end(ap);
    exit(EXIT_FAILURE);
}

void ml_die_child(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vmessage(err, false, fmt, ap);
    va_end(ap);
    _exit(EXIT_FAILURE);
}

void ml_warn(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    vmessage(err, true, fmt, ap);
    va_end(ap);
    errno = err;
}

void ml_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(0, true, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help'.\n", ml_progname);
    exit(2);
}
