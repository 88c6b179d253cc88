"""Checks 07.4–07.6 (last-token pooling, LoRA as a module, merging) accept other correct styles of
answer and reject the classic mistakes with the right hint. The chapter notebook they belong to is a
draft (tools/drafts/), with its own test; it moves here when the notebook lands.
"""
from __future__ import annotations

import torch
from torch import nn

from labkit.checks import ch07b
from labkit.exercises import check
from labkit.finetune import LoRALinear


# --------------------------------------------------------------------------- the checks


def test_last_token_pool_check_accepts_a_loop_and_gather():
    def with_a_loop(hidden, idx, pad_id):
        rows = []
        for h, ids in zip(hidden, idx):
            n = int((ids != pad_id).sum())
            rows.append(h[n - 1])
        return torch.stack(rows)

    def with_gather(hidden, idx, pad_id):
        last = ((idx != pad_id).sum(1) - 1)[:, None, None].expand(-1, 1, hidden.shape[2])
        return hidden.gather(1, last).squeeze(1)

    assert check("07.4", with_a_loop, show=False).passed
    assert check("07.4", with_gather, show=False).passed


def test_last_token_pool_hint_names_the_padding_column_and_the_off_by_one():
    assert "last *column*" in check("07.4", lambda h, i, p: h[:, -1], show=False).message
    off_by_one = lambda h, i, p: h[torch.arange(len(h)), (i != p).sum(1).clamp(max=h.shape[1] - 1)]  # noqa: E731
    assert "off by one" in check("07.4", off_by_one, show=False).message


def test_lora_check_accepts_nn_linear_factors_initialised_like_the_paper():
    class LinearFactors(nn.Module):  # A and B as parameters, initialised like Kaiming, written with F.linear
        def __init__(self, base, rank, alpha):
            super().__init__()
            base.weight.requires_grad = False
            base.bias.requires_grad = False
            self.base, self.rank, self.alpha = base, rank, alpha
            self.A = nn.Parameter(torch.empty(rank, base.in_features))
            nn.init.kaiming_uniform_(self.A, a=5 ** 0.5)
            self.B = nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x):
            update = nn.functional.linear(nn.functional.linear(x, self.A), self.B)
            return self.base(x) + update * self.alpha / self.rank

    assert check("07.5", LinearFactors, show=False).passed


def test_lora_hints_say_why_b_starts_at_zero_and_a_does_not():
    assert "initialise B with zeros" in check("07.5", ch07b._RandomB, show=False).message
    assert "never learns" in check("07.5", ch07b._BothZero, show=False).message
    assert "alpha / rank" in check("07.5", ch07b._ScaledByAlpha, show=False).message


def test_merge_check_accepts_a_copy_of_the_base_layer():
    import copy

    def via_copy(lora):
        merged = copy.deepcopy(lora.base)
        with torch.no_grad():
            merged.weight += lora.delta_weight()
        return merged

    assert check("07.6", via_copy, show=False).passed


def test_merge_reference_equals_labkits_merged_layer():
    torch.manual_seed(3)
    lora = LoRALinear(nn.Linear(4, 6), rank=2, alpha=3)
    with torch.no_grad():
        lora.lora_B.weight.normal_()
    x = torch.randn(5, 4)
    torch.testing.assert_close(ch07b._reference_merge(lora)(x), lora.merged()(x))


