"""Grading machinery for instructors: what keeps an nbgrader grade honest.

- ``preprocessors``: nbgrader preprocessors that restore tampered cells, sandbox the kernel and
  check after every cell that nothing a hidden test relies on was changed
- ``kernel_state``: the part of that check that runs inside the student's kernel
- ``report``: the instructor's summary of what the checks found in a class
"""
