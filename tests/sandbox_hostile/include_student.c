/* include_student.c - sandbox-hostile lab for the compiler: includes another
 * student's file (SECRET_OTHER in paths.h), hoping the compiler's error messages
 * quote it.
 * Expected: a compile error that shows nothing of the file, 0 points. */
#include "paths.h"
#include SECRET_OTHER

int main(void)
{
    return 0;
}
