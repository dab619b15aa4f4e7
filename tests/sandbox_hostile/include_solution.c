/* include_solution.c - sandbox-hostile lab for the compiler: includes the course's
 * reference solution (SOLUTION_FILE in paths.h: labs/faults/faults.c of the course
 * tree), which would otherwise compile into full marks.
 * Expected: a compile error (the course's solutions are not visible to the
 * compilation), 0 points. */
#include "paths.h"
#include SOLUTION_FILE
