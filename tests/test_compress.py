"""labkit.compress (chapter 08c) equals the libraries: torch.nn.utils.prune's masks, gguf's Q4_1 bytes,
PyTorch's per-channel int8 weights and its dynamic int8 Linear's output."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants
from torch import nn
from torch.nn.utils import prune

from labkit import compress


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("shape", [(64, 48), (8, 3, 3, 3)])
def test_magnitude_mask_equals_l1_unstructured(amount, shape):
    torch.manual_seed(0)
    layer = nn.Linear(1, 1) if len(shape) == 2 else nn.Conv2d(3, 8, 3)
    layer.weight = nn.Parameter(torch.randn(shape))
    ours = compress.magnitude_mask(layer.weight, amount)
    prune.l1_unstructured(layer, "weight", amount=amount)
    assert torch.equal(ours, layer.weight_mask)


@pytest.mark.parametrize("amount", [0.0, 0.25, 0.5, 0.75])
@pytest.mark.parametrize("n", [1, 2])
def test_channel_mask_equals_ln_structured(amount, n):
    torch.manual_seed(1)
    for layer in (nn.Linear(40, 32), nn.Conv2d(3, 16, 3)):
        ours = compress.channel_mask(layer.weight, amount, n=n, dim=0)
        prune.ln_structured(layer, "weight", amount=amount, n=n, dim=0)
        assert torch.equal(ours, layer.weight_mask)


def test_keep_outputs_and_inputs_make_the_same_function_as_the_masked_model():
    torch.manual_seed(2)
    first, second = nn.Linear(20, 16), nn.Linear(16, 5)
    keep = compress.kept_channels(first.weight, 0.5)
    x = torch.randn(7, 20)
    hidden = torch.relu(first(x)) * compress.channel_mask(first.weight, 0.5)[:, 0]
    small = compress.keep_inputs(second, keep)(torch.relu(compress.keep_outputs(first, keep)(x)))
    torch.testing.assert_close(small, second(hidden))
    conv, head = nn.Conv2d(1, 6, 3), nn.Linear(6 * 4 * 4, 3)
    keep = compress.kept_channels(conv.weight, 0.5)
    images = torch.randn(2, 1, 6, 6)
    masked = conv(images) * compress.channel_mask(conv.weight, 0.5)[:, 0, 0, 0, None, None]
    small = compress.keep_inputs(head, keep, group=16)(compress.keep_outputs(conv, keep)(images).flatten(1))
    torch.testing.assert_close(small, head(masked.flatten(1)))


def test_q4_1_bytes_equal_gguf_and_dequantize_equals_gguf():
    torch.manual_seed(3)
    weight = torch.randn(12, 96) * torch.rand(12, 1)
    weight[0, :32] = 0.5                                        # a constant block: d = 0
    ours = compress.quantize_q4_1(weight)
    theirs = quants.quantize(weight.numpy(), GGMLQuantizationType.Q4_1)   # (12, 60): 3 blocks of 20 bytes a row
    assert np.array_equal(ours.numpy().reshape(-1), theirs.reshape(-1))
    back = quants.dequantize(theirs, GGMLQuantizationType.Q4_1)
    assert np.array_equal(compress.dequantize_q4_1(ours, weight.shape).numpy(), back)
    assert compress.stored_bytes(weight, "q4_1") == theirs.nbytes


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_int8_per_channel_integers_equal_pytorchs_and_the_output_is_close_to_quantize_dynamic(seed):
    torch.manual_seed(seed)
    layer = nn.Sequential(nn.Linear(256, 128))
    q, scale = compress.quantize_int8_per_channel(layer[0].weight)
    dynamic = torch.ao.quantization.quantize_dynamic(
        layer, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
    packed = dynamic[0]._packed_params._weight_bias()[0]
    assert torch.equal(packed.int_repr(), q)
    torch.testing.assert_close(packed.q_per_channel_scales().float(), scale)
    x = torch.randn(10, 256)
    ours = x @ compress.dequantize_int8(q, scale).T + layer[0].bias
    assert (ours - dynamic(x)).abs().max() < 0.02 * layer(x).abs().max()


def test_round_trip_errors_shrink_with_more_bits():
    torch.manual_seed(5)
    weight = torch.randn(64, 128)
    errors = [(compress.round_trip(weight, s) - weight).abs().max().item() for s in ("fp32", "bf16", "int8", "q4_1")]
    assert errors[0] == 0 and errors[1] < errors[2] < errors[3]
    with pytest.raises(ValueError, match="unknown scheme"):
        compress.round_trip(weight, "int4")


def test_dynamic_int8_linear_by_hand_equals_quantize_dynamic_with_outliers():
    torch.manual_seed(7)
    layer = nn.Sequential(nn.Linear(576, 384))
    x = torch.randn(32, 576)
    x[:, 5] *= 30                                              # one outlier feature, as in large models
    dynamic = torch.ao.quantization.quantize_dynamic(
        layer, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)
    q, scale = compress.quantize_int8_per_channel(layer[0].weight)
    torch.testing.assert_close(compress.dynamic_int8_linear(x, q, scale, layer[0].bias), dynamic(x), rtol=0, atol=1e-4)
