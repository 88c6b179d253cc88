"""Checks for chapter 11 (the future: 未来发展趋势与挑战), split over notebooks.

Each notebook's checks live in its own module; importing them here registers every
exercise of the chapter:

- ``ch11a`` (11a_scale_and_efficiency): 11.1–11.3
- ``ch11b`` (11b_privacy_bias_interpretability): 11.4–11.6
"""
from labkit.course.checks import (
    ch11a,  # noqa: F401  (importing registers the exercises)
    ch11b,  # noqa: F401
)
