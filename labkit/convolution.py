"""Convolution by hand: the articles' y = f(x * w + b), as Python loops and as one matrix multiply.

Chapter 04 builds both step by step; this module keeps the clean versions that later chapters
show beside ``torch.nn.functional.conv2d``. Like PyTorch (and every deep-learning library), "convolution"
here means *cross-correlation*: the kernel slides over the image without being flipped::

    out[b, o, i, j] = bias[o] + sum over c, u, v of  x[b, c, i*S + u, j*S + v] * weight[o, c, u, v]

for images ``x`` (B, C, H, W), kernels ``weight`` (O, C, kH, kW) and stride S (after zero padding).

- `conv2d_loops`: one Python loop step per output pixel (slow, but every line is the formula).
- `conv2d_unfold`: im2col: cut every patch out once (``F.unfold``), then one matrix multiply.
- `KERNELS`: classic 3×3 image kernels (edges, blur, sharpen, emboss) for exploring feature maps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["output_size", "conv2d_loops", "conv2d_unfold", "KERNELS"]


def output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output height (or width) of a convolution: floor((size + 2·padding − kernel_size) / stride) + 1."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    padded = size + 2 * padding
    if kernel_size > padded:
        raise ValueError(
            f"the kernel ({kernel_size} pixels) is larger than the padded input ({size} + 2·{padding} = {padded}): "
            "use a smaller kernel or more padding"
        )
    return (padded - kernel_size) // stride + 1


def _check_inputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Say clearly what is wrong with the shapes, before any arithmetic fails deep inside."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a batch of images of shape (B, C, H, W), got {shape}; "
                         "one grey image (H, W) becomes (1, 1, H, W) with image[None, None]")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must have shape (O, C, kH, kW), got {shape}; "
                         "one 3×3 kernel k becomes (1, 1, 3, 3) with k[None, None]")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels but each kernel has {weight.shape[1]} "
                         f"(weight shape {tuple(weight.shape)}): weight.shape[1] must equal x.shape[1]")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), one number per kernel, got {tuple(bias.shape)}")


def conv2d_loops(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """Convolution with two Python loops, one step per output pixel; same result as ``F.conv2d``.

    x (B, C, H, W), weight (O, C, kH, kW), bias (O,) or None → (B, O, H', W') with
    H' = `output_size`(H, kH, stride, padding). Each output pixel (i, j) is the sum of
    patch × kernel over (C, kH, kW), done for every image and every kernel at once.
    """
    _check_inputs(x, weight, bias)
    out_channels, _, kernel_h, kernel_w = weight.shape
    out_h = output_size(x.shape[2], kernel_h, stride, padding)
    out_w = output_size(x.shape[3], kernel_w, stride, padding)
    x = F.pad(x, (padding, padding, padding, padding))  # zeros around each image
    out = x.new_zeros(x.shape[0], out_channels, out_h, out_w)
    for i in range(out_h):
        for j in range(out_w):
            top, left = i * stride, j * stride
            patch = x[:, :, top:top + kernel_h, left:left + kernel_w]  # (B, C, kH, kW)
            # (B, 1, C, kH, kW) * (1, O, C, kH, kW), summed over C, kH, kW → (B, O)
            out[:, :, i, j] = (patch[:, None] * weight[None]).sum(dim=(2, 3, 4))
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


def conv2d_unfold(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
) -> torch.Tensor:
    """Convolution as one matrix multiply (im2col); same result as ``F.conv2d``.

    ``F.unfold`` cuts out every patch as a column: (B, C·kH·kW, L) with L = H'·W' patches.
    The kernels, flattened to rows (O, C·kH·kW), times those columns give (B, O, L),
    which is reshaped to the feature maps (B, O, H', W').
    """
    _check_inputs(x, weight, bias)
    out_channels, _, kernel_h, kernel_w = weight.shape
    out_h = output_size(x.shape[2], kernel_h, stride, padding)
    out_w = output_size(x.shape[3], kernel_w, stride, padding)
    columns = F.unfold(x, (kernel_h, kernel_w), padding=padding, stride=stride)  # (B, C·kH·kW, L)
    rows = weight.reshape(out_channels, -1)                                      # (O, C·kH·kW)
    out = rows @ columns                                                          # (B, O, L)
    if bias is not None:
        out = out + bias[None, :, None]
    return out.reshape(x.shape[0], out_channels, out_h, out_w)


def _kernel(rows: list[list[float]], scale: float = 1.0) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32) * scale


KERNELS: dict[str, torch.Tensor] = {
    "identity": _kernel([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "edge: Sobel x": _kernel([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),        # bright where brightness rises to the right
    "edge: Sobel y": _kernel([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),        # bright where brightness rises downwards
    "edge: Laplacian": _kernel([[0, 1, 0], [1, -4, 1], [0, 1, 0]]),        # zero on flat areas, large on edges
    "blur: box": _kernel([[1, 1, 1], [1, 1, 1], [1, 1, 1]], 1 / 9),        # the mean of the 3×3 neighbourhood
    "blur: Gaussian": _kernel([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16),  # a weighted mean, centre counts most
    "sharpen": _kernel([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),             # identity minus the Laplacian
    "emboss": _kernel([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),               # a diagonal edge added to the image
}
"""Classic 3×3 kernels (kH, kW), by name. Blur kernels sum to 1 (brightness kept), edge kernels to 0."""
