"""Checks for chapter 06 (practice II: pretraining a GPT), split over four notebooks.

Each notebook's checks live in its own module; importing them here registers every
exercise of the chapter, so ``check("06.5", …)`` works from any of the notebooks:

- ``ch06a`` (06a_tokens_and_attention): 06.1–06.3, 06.13 and 06.14
- ``ch06b`` (06b_pretraining): 06.4–06.5
- ``ch06c`` (06c_sampling_and_kv_cache): 06.6–06.8 and 06.12
- ``ch06d`` (06d_real_llm): 06.9–06.11
"""
from labkit.course.checks import ch06a, ch06b, ch06c, ch06d  # noqa: F401  (importing registers the exercises)
