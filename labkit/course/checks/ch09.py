"""Checks for chapter 09 (applications: 实际应用场景), split over notebooks.

Each notebook's checks live in its own module; importing them here registers every
exercise of the chapter:

- ``ch09a`` (09a_vision): 09.1–09.5
- ``ch09b`` (09b_speech_and_recommendation): 09.6–09.10
- ``ch09c`` (09c_language_and_games): 09.11–09.15

A notebook uses as many of its ids as it has exercises, from the first.
"""
from labkit.course.checks import (
    ch09a,  # noqa: F401  (importing registers the exercises)
    ch09b,  # noqa: F401
    ch09c,  # noqa: F401
)
