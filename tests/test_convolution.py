"""labkit.convolution: both hand-made convolutions agree with F.conv2d; shapes, errors and kernels."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkit.convolution import KERNELS, conv2d_loops, conv2d_unfold, output_size

METHODS = [conv2d_loops, conv2d_unfold]

CASES = [
    # (B, C, H, W), (O, kH, kW), stride, padding, with bias
    ((1, 1, 6, 6), (1, 3, 3), 1, 0, False),
    ((2, 3, 9, 7), (4, 3, 3), 1, 1, True),
    ((3, 2, 10, 11), (5, 2, 4), 2, 0, True),   # non-square kernel and image, stride 2
    ((2, 1, 8, 8), (3, 5, 5), 3, 2, True),
    ((1, 2, 3, 3), (2, 3, 3), 1, 0, True),     # output 1×1
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "padding", "with_bias"), CASES)
def test_agrees_with_torch_conv2d(method, x_shape, w_shape, stride, padding, with_bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*x_shape, generator=generator, dtype=torch.float64)
    out_channels, kh, kw = w_shape
    weight = torch.randn(out_channels, x_shape[1], kh, kw, generator=generator, dtype=torch.float64)
    bias = torch.randn(out_channels, generator=generator, dtype=torch.float64) if with_bias else None
    expected = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    got = method(x, weight, bias, stride=stride, padding=padding)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-10)
    assert got.shape[2:] == (output_size(x_shape[2], kh, stride, padding), output_size(x_shape[3], kw, stride, padding))


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_is_cross_correlation_not_flipped(method):
    # one bright pixel: cross-correlation writes the kernel back *flipped*; a true convolution would not
    image = torch.zeros(1, 1, 5, 5)
    image[0, 0, 2, 2] = 1.0
    kernel = torch.arange(9.0).reshape(1, 1, 3, 3)
    out = method(image, kernel, padding=1)[0, 0, 1:4, 1:4]
    assert torch.equal(out, kernel[0, 0].flip(0, 1))


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_gradients_flow_like_conv2d(method):
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    method(x, weight, padding=1).square().sum().backward()
    mine = weight.grad.clone()
    weight.grad = None
    F.conv2d(x, weight, padding=1).square().sum().backward()
    assert torch.allclose(mine, weight.grad)


def test_output_size():
    assert output_size(28, 3) == 26
    assert output_size(28, 3, padding=1) == 28
    assert output_size(28, 3, stride=2, padding=1) == 14
    assert output_size(7, 2, stride=2) == 3  # the last column does not fit and is dropped


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_errors_speak_to_the_learner(method):
    image = torch.randn(28, 28)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got \(28, 28\).*image\[None, None\]"):
        method(image, torch.randn(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"\(O, C, kH, kW\), got \(3, 3\)"):
        method(image[None, None], torch.randn(3, 3))
    with pytest.raises(ValueError, match="x has 1 channels but each kernel has 3"):
        method(image[None, None], torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\).*got \(3,\)"):
        method(image[None, None], torch.randn(2, 1, 3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        method(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 3, 3))
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        method(image[None, None], torch.randn(1, 1, 3, 3), stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        method(image[None, None], torch.randn(1, 1, 3, 3), padding=-1)


def test_kernels():
    assert {"identity", "sharpen", "emboss"} <= set(KERNELS)
    image = torch.rand(1, 1, 10, 10)
    for name, kernel in KERNELS.items():
        assert kernel.shape == (3, 3) and kernel.dtype == torch.float32, name
        total = kernel.sum().item()
        if name.startswith("blur") or name in ("identity", "sharpen", "emboss"):
            assert total == pytest.approx(1.0), f"{name} should keep the brightness of flat areas"
        elif name.startswith("edge"):
            assert total == pytest.approx(0.0), f"{name} should give 0 on flat areas"
    same = F.conv2d(image, KERNELS["identity"][None, None], padding=1)
    assert torch.equal(same, image)
    flat = F.conv2d(torch.full((1, 1, 5, 5), 0.7), KERNELS["edge: Sobel x"][None, None])
    assert flat.abs().max() < 1e-6
