"""The course's machinery, apart from what the chapters teach: the exercises and their checks, and
the grader a teacher runs over a folder of submitted notebooks.

- `labkit.course.exercises`: ``check("05.1", answer)``, ``summary("05")`` and ``compare`` (the
  notebooks import them; ``labkit.check`` and friends are the same functions);
- `labkit.course.checks`: one module of checks per chapter notebook (``chNN.py``);
- `labkit.course.grading`: ``python -m labkit grade FOLDER``, with its kernel-side half
  (`grading_kernel`), the process that runs one submission (`grading_runner`) and the sandbox
  it runs in (`sandbox`). See docs/grading.md.

Importing this package imports nothing else (the grader must not import torch before it needs to).
"""
