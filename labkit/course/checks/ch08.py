"""Checks for chapter 08 (practice: scaling: the FAQ's 如何解决计算资源的限制), split over notebooks.

Each notebook's checks live in its own module; importing them here registers every
exercise of the chapter:

- ``ch08a`` (08a_memory_and_speed): 08.1–08.4, 08.16
- ``ch08b`` (08b_distributed): 08.5–08.7
- ``ch08c`` (08c_pruning_and_quantization): 08.8–08.11
- ``ch08d`` (08d_distillation_and_experts): 08.12–08.15
"""
from labkit.course.checks import ch08a  # noqa: F401  (importing registers the exercises)
from labkit.course.checks import ch08b  # noqa: F401
from labkit.course.checks import ch08c  # noqa: F401
from labkit.course.checks import ch08d  # noqa: F401
