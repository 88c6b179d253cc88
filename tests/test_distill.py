"""labkit.distill (chapter 08d): Hinton et al.'s loss equals PyTorch's KLDivLoss + cross_entropy formulation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit.distill import distillation_loss, soft_targets


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 10.0])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 1.0])
def test_equals_kldivloss_formulation(temperature, alpha):
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(32, 10) * 3, torch.randn(32, 10) * 3, torch.randint(10, (32,))
    kl = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(student / temperature, dim=1),
                                             F.softmax(teacher / temperature, dim=1))
    want = alpha * temperature ** 2 * kl + (1 - alpha) * F.cross_entropy(student, labels)
    assert distillation_loss(student, teacher, labels, temperature, alpha).item() == pytest.approx(want.item(), rel=1e-5)


def test_gradients_reach_the_student_only():
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    distillation_loss(student, teacher, torch.tensor([0, 1, 2, 3]), 3.0, 0.7).backward()
    assert student.grad is not None and teacher.grad is None


def test_the_t_squared_factor_keeps_the_gradient_size():
    torch.manual_seed(1)
    teacher = torch.randn(256, 10)
    student = (teacher + 0.5 * torch.randn(256, 10)).requires_grad_()
    norms = []
    for T in (2.0, 8.0):
        student.grad = None
        distillation_loss(student, teacher, None, T, 1.0).backward()
        norms.append(student.grad.norm().item())
    assert 0.5 < norms[1] / norms[0] < 2.0                     # without T²: about (2/8)² = 1/16


def test_soft_targets_flatten_with_temperature():
    logits = torch.tensor([[4.0, 1.0, 0.0]])
    assert soft_targets(logits, 1.0).max() > soft_targets(logits, 5.0).max()
    assert torch.allclose(soft_targets(logits, 1.0), F.softmax(logits, dim=1))


def test_bad_input_errors():
    with pytest.raises(ValueError, match="temperature"):
        soft_targets(torch.zeros(1, 3), 0.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 2.0, 1.5)
    with pytest.raises(ValueError, match="labels are needed"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), None, 2.0, 0.5)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4), None, 2.0, 1.0)
