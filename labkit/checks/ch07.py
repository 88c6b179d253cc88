"""Checks for chapter 07 (practice III: fine-tuning), split over notebooks.

Each notebook's checks live in its own module; importing them here registers every
exercise of the chapter:

- ``ch07a`` (07a_transfer_learning): 07.1–07.3
"""
from labkit.checks import ch07a  # noqa: F401  (importing registers the exercises)
