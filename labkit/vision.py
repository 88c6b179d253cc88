"""Image recognition beyond a plain CNN: residual networks, augmentation, retrieval and Grad-CAM.

Chapter 09a builds each piece by hand and then reuses the version kept here:

- `ResidualBlock` and `ResNet`: a small residual network for 28×28 grey images;
- `random_crop_flip` / `RandomCropFlip`: shifted crops and mirror images, made with tensor ops;
- `embed`, `nearest_neighbours`, `precision_at_k`: image retrieval by embedding similarity;
- `grad_cam`, `grad_cam_from`: where a convolutional network looks (Selvaraju et al., 2017).

Images are float tensors (B, C, H, W), here (B, 1, 28, 28) with values in [0, 1].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ResidualBlock", "ResNet", "random_crop_flip", "RandomCropFlip",
    "embed", "nearest_neighbours", "precision_at_k", "grad_cam", "grad_cam_from",
]


def _expect_images(images: object, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} should be a torch.Tensor (B, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} should have 4 dimensions (B, C, H, W), got shape {tuple(images.shape)}: "
                         "add the channel with images.unsqueeze(1)")
    if not images.is_floating_point():
        raise ValueError(f"{name} should be floating point, got {images.dtype}: convert with images.float() / 255")
    return images


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions whose output is *added* to the block's input: y = ReLU(F(x) + shortcut(x)).

    F(x) = BN(conv(ReLU(BN(conv(x))))). The shortcut is the identity when the shape stays the same,
    else a strided 1×1 convolution with batch norm (a "projection"). (B, C_in, H, W) →
    (B, C_out, H / stride, W / stride). Chapter 09a writes it by hand first (He et al., 2016).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("stride", stride)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ResidualBlock: {name} must be a positive int, got {value!r}")
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))          # the residual connection


class ResNet(nn.Module):
    """A small residual network: a 3×3 stem with 2×2 max-pooling (28 → 14), one residual block per
    stage (each stage after the first halves the resolution and widens), global average pooling and
    a linear classifier.

    (B, C, 28, 28) → logits (B, num_classes). `features(x)` gives the last stage's maps
    (B, widths[-1], 7, 7) for the default two stages, which Grad-CAM reads; `embed(x)` the pooled
    vector (B, widths[-1]) used for retrieval. Chapter 09a trains it on Fashion-MNIST against
    chapter 05's CNN.
    """

    def __init__(self, widths: Sequence[int] = (16, 32), num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"ResNet: widths must be positive ints, one per stage, got {widths!r}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"ResNet: num_classes must be an int ≥ 2, got {num_classes!r}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(), nn.MaxPool2d(2))
        blocks = [ResidualBlock(widths[0], widths[0])]
        blocks += [ResidualBlock(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:])]
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature maps, (B, widths[-1], H', W')."""
        return self.stages(self.stem(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pooling of `features`: one vector per image, (B, widths[-1])."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def random_crop_flip(images: torch.Tensor, padding: int = 2, flip: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image shifted by a random whole number of pixels in [-padding, padding] on each axis
    (pad with 0, then crop back to H × W) and, if `flip`, mirrored left–right with probability ½.

    (B, C, H, W) → (B, C, H, W), a new tensor. Chapter 09a builds it with indexing, by hand.
    """
    images = _expect_images(images)
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"random_crop_flip: padding must be an int ≥ 0 (pixels), got {padding!r}")
    B, C, H, W = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))           # (B, C, H + 2p, W + 2p)
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device="cpu").to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device="cpu").to(images.device)
    rows = (dy[:, None] + torch.arange(H, device=images.device))[:, None, :, None]   # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(W, device=images.device))[:, None, None, :]   # (B, 1, 1, W)
    batch = torch.arange(B, device=images.device)[:, None, None, None]
    channel = torch.arange(C, device=images.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]                                          # (B, C, H, W)
    if flip:
        mirror = torch.rand(B, generator=generator, device="cpu").to(images.device) < 0.5
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out


class RandomCropFlip(nn.Module):
    """`random_crop_flip` as the first layer of a model: active in training mode, the identity in
    eval mode (so `labkit.evaluate` and `labkit.predict` see clean images). Chapter 09a."""

    def __init__(self, padding: int = 2, flip: bool = True) -> None:
        super().__init__()
        self.padding, self.flip = padding, flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return random_crop_flip(x, self.padding, self.flip) if self.training else x


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """`model.embed` over many images in eval mode, in batches: (N, C, H, W) → (N, D). Chapter 09a."""
    images = _expect_images(images)
    method = getattr(model, "embed", None)
    if not callable(method):
        raise TypeError(f"embed: the model ({type(model).__name__}) has no .embed(x) method returning (B, D) vectors")
    was_training = model.training
    model.eval()
    try:
        return torch.cat([method(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)


def _cosine_similarities(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    if queries.dim() != 2 or gallery.dim() != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries (Q, D) and gallery (N, D) should be 2-D with the same D, got "
                         f"{tuple(queries.shape)} and {tuple(gallery.shape)}: flatten images with .flatten(1)")
    return F.normalize(queries.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T       # (Q, N)


def nearest_neighbours(queries: torch.Tensor, gallery: torch.Tensor, k: int,
                       exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The k gallery vectors most similar to each query by cosine similarity, most similar first.

    queries (Q, D), gallery (N, D) → (indices (Q, k) int64, similarities (Q, k)). With
    `exclude_self`, the queries *are* the gallery (Q = N) and each one's own entry is skipped.
    Chapter 09a (image retrieval); equal to scikit-learn's NearestNeighbors(metric="cosine").
    """
    sims = _cosine_similarities(queries, gallery)
    if not isinstance(k, int) or not 1 <= k <= gallery.shape[0] - int(exclude_self):
        raise ValueError(f"k must be an int from 1 to {gallery.shape[0] - int(exclude_self)} (the gallery's size), got {k!r}")
    if exclude_self:
        if queries.shape[0] != gallery.shape[0]:
            raise ValueError(f"exclude_self=True needs queries and gallery to be the same set, got {queries.shape[0]} "
                             f"queries and {gallery.shape[0]} gallery vectors")
        sims.fill_diagonal_(-float("inf"))
    values, indices = sims.topk(k, dim=1)
    return indices, values


def precision_at_k(embeddings: torch.Tensor, labels: torch.Tensor, k: int, batch_size: int = 2000) -> float:
    """Mean over every item of the share of its k nearest *other* items (cosine) that have its label.

    embeddings (N, D) (flatten images for pixel space), labels (N,) → a float in [0, 1].
    Chapter 09a scores retrieval with it.
    """
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels should be (N,) with N = {embeddings.shape[0]} (one per embedding), got {tuple(labels.shape)}")
    if not isinstance(k, int) or not 1 <= k < embeddings.shape[0]:
        raise ValueError(f"k must be an int from 1 to {embeddings.shape[0] - 1} (the others), got {k!r}")
    normed = F.normalize(embeddings.float(), dim=1)
    hits = 0.0
    for start in range(0, len(normed), batch_size):                     # (b, N) similarities at a time
        block = normed[start:start + batch_size]
        sims = block @ normed.T
        sims[torch.arange(len(block)), torch.arange(start, start + len(block))] = -float("inf")   # not itself
        indices = sims.topk(k, dim=1).indices                           # (b, k)
        hits += (labels[indices] == labels[start:start + len(block), None]).float().sum().item()
    return hits / (len(normed) * k)


def grad_cam_from(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM from a layer's activations A (B, K, H, W) and the gradients ∂y_c/∂A (same shape):
    weights α_k = mean over H, W of the gradient; map = ReLU(Σ_k α_k A_k), (B, H, W). Chapter 09a."""
    if activations.shape != gradients.shape or activations.dim() != 4:
        raise ValueError(f"activations and gradients should both be (B, K, H, W), got {tuple(activations.shape)} "
                         f"and {tuple(gradients.shape)}")
    weights = gradients.mean(dim=(2, 3), keepdim=True)                 # (B, K, 1, 1): α_k
    return F.relu((weights * activations).sum(dim=1))                   # (B, H, W)


def grad_cam(model: nn.Module, layer: nn.Module, images: torch.Tensor,
             classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps of `layer`'s output for each image's class `classes` (default: the predicted one).

    images (B, C, H, W) → (maps (B, h, w) at the layer's resolution, logits (B, num_classes)).
    Hooks record the layer's output and its gradient; the model runs in eval mode. Chapter 09a.
    """
    images = _expect_images(images)
    saved: dict[str, torch.Tensor] = {}

    def keep(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        if not output.requires_grad:
            raise ValueError(f"grad_cam: the output of `layer` ({type(module).__name__}) does not depend on any "
                             "parameter, so it has no gradient: choose a layer with weights (a convolution, a block)")
        output.retain_grad()
        saved["activations"] = output

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(images)
            if "activations" not in saved:
                raise ValueError("grad_cam: `layer` did not run in model(images): pass a module of this model")
            chosen = logits.argmax(dim=1) if classes is None else classes.to(logits.device)
            if chosen.shape != (len(images),):
                raise ValueError(f"classes should be (B,) = ({len(images)},), one class per image, got {tuple(chosen.shape)}")
            logits.gather(1, chosen[:, None]).sum().backward()           # each image's score only reaches its own maps
    finally:
        handle.remove()
        model.train(was_training)
    activations = saved["activations"]
    assert activations.grad is not None
    maps = grad_cam_from(activations.detach(), activations.grad)
    model.zero_grad(set_to_none=True)
    return maps, logits.detach()
