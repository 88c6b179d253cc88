"""Knowledge distillation (chapter 08d): a small student learns from a large teacher's soft targets.

Hinton, Vinyals and Dean (2015), "Distilling the Knowledge in a Neural Network": divide both
models' logits by a temperature T > 1, so that the teacher's probabilities show how much it
confuses each class with the others ("dark knowledge"), and train the student to match them:

    loss = α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − α) · CE(student, labels)

The T² keeps the soft term's gradients the same size as T changes (they shrink as 1/T²).
Shapes: N examples, K classes; logits (N, K), labels (N,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_targets", "distillation_loss"]


def soft_targets(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) over the last dimension: (N, K) → (N, K). T = 1 is the usual softmax."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (1: the plain softmax, larger: softer), got {temperature!r}")
    return F.softmax(logits / temperature, dim=-1)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                      temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton et al.'s loss, the mean over N examples (a 0-d tensor).

    student_logits, teacher_logits (N, K); labels (N,) class ids, or None when alpha = 1 (no labels).
    The teacher's logits are treated as constants (no gradient flows into the teacher).
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"student_logits and teacher_logits must both be (N, K), got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the soft targets' weight) must be in [0, 1], got {alpha!r}")
    if labels is None and alpha < 1.0:
        raise ValueError(f"labels are needed when alpha < 1 (alpha={alpha}): (1 − alpha) weighs the labels' loss")
    T = temperature
    p_teacher = soft_targets(teacher_logits.detach(), T)                       # (N, K)
    log_p_student = F.log_softmax(student_logits / T, dim=-1)                   # (N, K)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    kl = (p_teacher * (log_p_teacher - log_p_student)).sum(dim=-1).mean()       # KL(teacher ‖ student)
    loss = alpha * T * T * kl
    if alpha < 1.0:
        assert labels is not None
        loss = loss + (1.0 - alpha) * F.cross_entropy(student_logits, labels)
    return loss
