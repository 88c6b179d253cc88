"""The checks of each chapter's exercises: one module per chapter, ``chNN.py``.

Each module registers its exercises with `labkit.course.exercises.exercise`; `labkit.check("05.1", ...)`
imports ``labkit.course.checks.ch05`` the first time one of its exercises is checked. A new chapter's
exercises go in a new ``chNN.py``; the tests find it on their own and prove that every check
accepts its reference answer and rejects its stub and its `wrong` answers.
"""
