/* args.c - option values: sizes with units, fractions, bounded integers. */
#include "memlab.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int ml_try_parse_long(const char *arg, long min, long max, long *out, const char **err)
{
    char *end;
    if (arg == NULL || *arg == '\0') {
        *err = "an empty value";
        return -1;
    }
    /* decimal, or hex after 0x: strtol(base 0) would read "010" as octal 8
     * and refuse "08" */
    const char *digits = arg;
    while (isspace((unsigned char)*digits))
        digits++;
    if (*digits == '-' || *digits == '+')
        digits++;
    if (*digits < '0' || *digits > '9') {
        *err = "not an integer";
        return -1;
    }
    int base = digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X') ? 16 : 10;
    errno = 0;
    long v = strtol(arg, &end, base);
    if (errno == ERANGE) {
        *err = "out of range";
        return -1;
    }
    if (end == arg || *end != '\0') {
        *err = "not an integer";
        return -1;
    }
    if (v < min || v > max) {
        *err = "out of range";
        return -1;
    }
    *out = v;
    return 0;
}

int ml_try_parse_size(const char *arg, size_t *out, const char **err)
{
    char *end;
    if (arg == NULL || *arg == '\0') {
        *err = "an empty value";
        return -1;
    }
    /* strtoull() skips white space and negates a '-' after it: " -1" would be
     * "too large" and " -18446744073709551615" would come back as 1 */
    const char *first = arg;
    while (isspace((unsigned char)*first))
        first++;
    if (*first == '-') {
        *err = "negative";
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (end == arg) {
        *err = "not a size (try 4096, 64K, 256M or 1G)";
        return -1;
    }
    if (errno == ERANGE) {
        *err = "too large";
        return -1;
    }
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default:
        *err = "not a size (try 4096, 64K, 256M or 1G)";
        return -1;
    }
    /* accept the long spellings 64KiB / 64KB / 64MiB / 64MB */
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (*end != '\0') {
        *err = "not a size (try 4096, 64K, 256M or 1G)";
        return -1;
    }
    if (v == 0) {
        *err = "zero";
        return -1;
    }
    if (shift && v > (ULLONG_MAX >> shift)) {
        *err = "too large";
        return -1;
    }
    v <<= shift;
    if (v > (unsigned long long)SIZE_MAX / 2) {
        *err = "too large";
        return -1;
    }
    *out = (size_t)v;
    return 0;
}

size_t ml_parse_size(const char *arg, const char *what)
{
    size_t v;
    const char *err;
    if (ml_try_parse_size(arg, &v, &err) < 0)
        ml_usage_error("%s '%s': %s", what, arg ? arg : "", err);
    return v;
}

long ml_parse_long(const char *arg, const char *what, long min, long max)
{
    long v;
    const char *err;
    if (ml_try_parse_long(arg, min, max, &v, &err) < 0)
        ml_usage_error("%s '%s': %s (expected %ld..%ld)", what, arg ? arg : "", err, min, max);
    return v;
}

double ml_parse_fraction(const char *arg, const char *what)
{
    char *end;
    if (arg == NULL || *arg == '\0')
        ml_usage_error("%s: an empty value (expected a number from 0 to 1)", what);
    errno = 0;
    double v = strtod(arg, &end);
    if (end == arg || *end != '\0' || errno == ERANGE || !isfinite(v) || v < 0.0 || v > 1.0)
        ml_usage_error("%s '%s': expected a number from 0 to 1, e.g. 0.25", what, arg);
    return v;
}
