"""Grading machinery for instructors: what keeps an nbgrader grade honest.

- ``preprocessors``: nbgrader preprocessors that restore tampered cells, sandbox the kernel and
  decide every test cell's verdict in the grader's process
- ``verdict``: runs a test cell in the grader against the kernel's answers in plain data
- ``agent``: the plain-data format, and the small agent the grader sends into the kernel
- ``sandbox``: the bubblewrap sandbox and its limits; ``classroom``: grading a class in parallel
- ``report``: the instructor's summary of what the grader found in a class; ``export``: grades for an LMS
- ``formgrade``: the model answers on Formgrader's grading page; ``validate``: nbgrader's Validator with progress
- ``course``: the course folder's nbgrader configuration and gradebook URL
"""
