/* include_forever.c - sandbox-hostile lab for the compiler: includes itself twice
 * at every level down to depth 40: 2^40 inclusions, no error, little memory: a
 * compilation that never ends.
 * Expected: stopped by the CPU-time or wall-clock limit, a compile error, 0 points. */
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
