/* include_forever.c - sandbox-hostile lab for the compiler: includes itself twice
 * at every level down to depth 40: 2^40 inclusions, no error, slowly growing memory: a
 * compilation that never ends.
 * Expected: stopped by the CPU-time, wall-clock or memory limit, a compile error, 0 points. */
#if __INCLUDE_LEVEL__ < 40
#include __FILE__
#include __FILE__
#endif
#if __INCLUDE_LEVEL__ == 0
int main(void)
{
    return 0;
}
#endif
