/* include_zero.c - sandbox-hostile lab for the compiler: includes /dev/zero, a
 * file that never ends.
 * Expected: the compilation is stopped by a limit of the sandbox (memory or CPU
 * time), a compile error, 0 points. */
#include "/dev/zero"

int main(void)
{
    return 0;
}
