"""Checks for chapter 07 (practice III: fine-tuning), split over notebooks.

Each notebook's checks live in its own module; importing them here registers every
exercise of the chapter:

- ``ch07a`` (07a_transfer_learning): 07.1–07.3
- ``ch07b`` (07b_classification_and_lora): 07.4–07.6
- ``ch07c`` (07c_instruction_tuning): 07.7–07.8
- ``ch07d`` (07d_preference_and_rl): 07.9–07.11
- ``ch07e`` (07e_real_llm_finetuning): 07.12–07.14
"""
from labkit.course.checks import (
    ch07a,  # noqa: F401  (importing registers the exercises)
    ch07b,  # noqa: F401
    ch07c,  # noqa: F401
    ch07d,  # noqa: F401
    ch07e,  # noqa: F401
)
