/* junk.c - hostile lab: sends malformed packets on MEMLAB_FD (binary garbage,
 * a 300-byte figure name, "fig" without name or value, "cp" with an invalid or
 * overlong name, non-ASCII bytes, an oversized packet, an empty packet, a
 * second hello), then takes a real checkpoint and exits with status 5. The
 * grader must count the junk, keep listening (the checkpoint is answered), and
 * fail the checks with "exited with status 5". */
#include "memlab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int fd;

static void raw(const void *buf, size_t len)
{
    send(fd, buf, len, MSG_NOSIGNAL);
}

static void str(const char *s)
{
    raw(s, strlen(s));
}

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    fd = atoi(getenv("MEMLAB_FD"));

    unsigned char garbage[256];
    for (int i = 0; i < 256; i++)
        garbage[i] = (unsigned char)(i * 37 + 11);
    raw(garbage, sizeof garbage);

    char big[400];
    memcpy(big, "fig ", 4);
    memset(big + 4, 'a', 300);
    memcpy(big + 304, " 1", 3);
    str(big);                                   /* a 300-byte figure name */

    str("fig");
    str("fig ");
    str("fig touch_minflt");                    /* no value */
    str("cp");
    str("cp ");
    str("cp ../../etc/passwd");
    str("cp START");
    memcpy(big, "cp ", 3);
    memset(big + 3, 'b', 300);
    big[303] = '\0';
    str(big);                                   /* a 300-byte checkpoint name */
    str("fig caf\xc3\xa9 1");                   /* non-ASCII name */
    str("fig mmap_minflt \xff\xfe\x80");        /* non-ASCII value */
    raw("fig mmap_minflt 7\0trailing", 26);     /* a NUL inside */
    str("hello memlab/1 impostor");             /* a second hello */
    str("go");
    raw("", 0);                                 /* an empty packet */

    static char huge[4096];
    memset(huge, 'z', sizeof huge);
    memcpy(huge, "fig ", 4);
    raw(huge, sizeof huge);                     /* far beyond 320 bytes */

    ml_checkpoint("start");                     /* must still be answered */
    printf("faults: junk sent, checkpoint answered\n");
    return 5;
}
