"""Checks for chapter 07 (practice III: fine-tuning), split over notebooks.

Each notebook's checks live in its own module; importing them here registers every
exercise of the chapter:

- ``ch07a`` (07a_transfer_learning): 07.1–07.3
- ``ch07c`` (07c_instruction_tuning): 07.7–07.8

``ch07b`` (07.4–07.6: last-token pooling, LoRA as a module, merging) is written and tested, but is
imported here only when its notebook lands (a draft is in tools/drafts/): a teacher's grading
table should not ask for exercises no notebook holds yet.
"""
from labkit.checks import ch07a  # noqa: F401  (importing registers the exercises)
from labkit.checks import ch07c  # noqa: F401
