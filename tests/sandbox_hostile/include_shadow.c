/* include_shadow.c - sandbox-hostile lab for the compiler: includes /etc/shadow,
 * hoping the compiler's error messages quote its lines.
 * Expected: a compile error that shows nothing of the file, 0 points. */
#include "/etc/shadow"

int main(void)
{
    return 0;
}
