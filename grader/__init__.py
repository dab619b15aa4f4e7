"""memlab's grader: runs the labs, observes them through /proc, grades the figures.

Standard library only at run time (Python >= 3.11, or 3.10 with tomli).
Entry point: ``python3 -m grader --help``.
"""

__version__ = "1.0.0"
