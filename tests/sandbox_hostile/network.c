/* network.c - sandbox-hostile lab: tries to reach a listener of the host over TCP
 * (127.0.0.1:TCP_PORT), an abstract unix socket of the host (ABSTRACT_NAME), and a
 * public address.
 * Expected: every connection fails (only its own loopback exists), the listeners
 * get nothing, 0 points (exit 3). */
#include "memlab.h"
#include "paths.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void tcp(const char *ip, int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    if (r == 0)
        r = (int)write(s, "LEAK", 4);
    printf("tcp %s:%d: %d\n", ip, port, r);
    close(s);
}

int main(int argc, char **argv)
{
    ml_init("faults", argc, argv);
    tcp("127.0.0.1", TCP_PORT);
    tcp("1.1.1.1", 80);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    const char *name = ABSTRACT_NAME;
    memcpy(u.sun_path + 1, name, strlen(name));
    int r = connect(s, (struct sockaddr *)&u, (socklen_t)(sizeof u.sun_family + 1 + strlen(name)));
    if (r == 0)
        r = (int)write(s, "LEAK", 4);
    printf("abstract unix @%s: %d\n", name, r);
    fflush(stdout);
    return 3;
}
