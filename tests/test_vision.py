"""labkit.vision (chapter 09a): the residual block, the augmentation, retrieval and Grad-CAM,
each proven against a second computation or a library (scikit-learn's nearest neighbours)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from labkit import vision


def _images(seed: int, n: int = 6, channels: int = 1, size: int = 28) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- residual block and network


def test_residual_block_with_identity_shortcut_adds_its_input():
    torch.manual_seed(0)
    block = vision.ResidualBlock(4).eval()
    x = torch.randn(2, 4, 9, 9)
    branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    assert torch.allclose(block(x), torch.relu(branch + x), atol=1e-6)
    nn.init.zeros_(block.bn2.weight)                  # a zero branch: the block passes ReLU(x) on
    nn.init.zeros_(block.bn2.bias)
    assert torch.allclose(block(x), torch.relu(x))


def test_residual_block_projects_when_the_shape_changes():
    block = vision.ResidualBlock(4, 8, stride=2)
    assert isinstance(block.shortcut, nn.Sequential)
    assert block(torch.randn(3, 4, 14, 14)).shape == (3, 8, 7, 7)
    assert isinstance(vision.ResidualBlock(4, 4).shortcut, nn.Identity)


def test_resnet_shapes_and_embedding():
    model = vision.ResNet((8, 16)).eval()
    x = _images(1, 5)
    assert model.features(x).shape == (5, 16, 7, 7)
    assert model.embed(x).shape == (5, 16)
    assert torch.allclose(model(x), model.head(model.embed(x)))
    assert torch.allclose(vision.embed(model, x, batch_size=2), model.embed(x), atol=1e-6)


@pytest.mark.parametrize("bad", [dict(widths=()), dict(widths=(8, 0)), dict(num_classes=1)])
def test_resnet_rejects_bad_settings_with_the_value(bad):
    with pytest.raises(ValueError, match="ResNet"):
        vision.ResNet(**bad)


# --------------------------------------------------------------------------- augmentation


def test_random_crop_flip_is_a_shift_or_a_mirrored_shift():
    x = _images(2, 40, channels=2)
    out = vision.random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    for image, result in zip(padded, out):
        candidates = [image[:, dy:dy + 28, dx:dx + 28] for dy in range(5) for dx in range(5)]
        if any(torch.equal(result, c) for c in candidates):
            continue
        assert any(torch.equal(result, c.flip(-1)) for c in candidates), "neither a crop nor a mirrored crop"
        flips += 1
    assert 5 < flips < 35                               # about half are mirrored


def test_random_crop_flip_without_padding_or_flip_is_the_identity():
    x = _images(3)
    assert torch.equal(vision.random_crop_flip(x, padding=0, flip=False), x)


def test_random_crop_flip_layer_is_off_in_eval_mode():
    x = _images(4)
    layer = vision.RandomCropFlip()
    assert torch.equal(layer.eval()(x), x)
    torch.manual_seed(0)
    assert not torch.equal(layer.train()(x), x)


def test_random_crop_flip_errors_name_the_problem():
    with pytest.raises(ValueError, match="4 dimensions"):
        vision.random_crop_flip(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match="padding"):
        vision.random_crop_flip(torch.rand(2, 1, 28, 28), padding=-1)
    with pytest.raises(ValueError, match="floating point"):
        vision.random_crop_flip(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


# --------------------------------------------------------------------------- retrieval


def test_nearest_neighbours_equal_scikit_learns():
    neighbors = pytest.importorskip("sklearn.neighbors")
    generator = torch.Generator().manual_seed(5)
    gallery, queries = torch.randn(200, 12, generator=generator), torch.randn(30, 12, generator=generator)
    indices, sims = vision.nearest_neighbours(queries, gallery, k=7)
    theirs = neighbors.NearestNeighbors(n_neighbors=7, metric="cosine", algorithm="brute").fit(gallery.numpy())
    distances, their_indices = theirs.kneighbors(queries.numpy())
    assert torch.equal(indices, torch.from_numpy(their_indices))
    assert torch.allclose(sims.double(), 1 - torch.from_numpy(distances).double(), atol=1e-5)


def test_precision_at_k_by_brute_force_and_by_scikit_learn():
    neighbors = pytest.importorskip("sklearn.neighbors")
    generator = torch.Generator().manual_seed(6)
    labels = torch.randint(0, 3, (150,), generator=generator)
    embeddings = torch.randn(150, 8, generator=generator) + 1.5 * nn.functional.one_hot(labels, 8).float()
    theirs = neighbors.NearestNeighbors(n_neighbors=6, metric="cosine", algorithm="brute").fit(embeddings.numpy())
    _, found = theirs.kneighbors(embeddings.numpy())               # each point's first neighbour is itself
    expected = (labels[torch.from_numpy(found[:, 1:])] == labels[:, None]).double().mean().item()
    assert vision.precision_at_k(embeddings, labels, k=5, batch_size=40) == pytest.approx(expected, abs=1e-9)
    indices, _ = vision.nearest_neighbours(embeddings, embeddings, k=5, exclude_self=True)
    assert (labels[indices] == labels[:, None]).double().mean().item() == pytest.approx(expected, abs=1e-9)


def test_precision_at_k_is_one_for_perfect_clusters_and_chance_for_noise():
    labels = torch.arange(4).repeat_interleave(10)
    assert vision.precision_at_k(nn.functional.one_hot(labels, 4).float() + 0.01 * torch.rand(40, 4), labels, 9) == 1.0
    noise = torch.randn(2000, 16, generator=torch.Generator().manual_seed(0))
    assert abs(vision.precision_at_k(noise, torch.arange(2000) % 4, 10) - 0.25) < 0.03


def test_retrieval_errors_name_the_problem():
    with pytest.raises(ValueError, match="same D"):
        vision.nearest_neighbours(torch.rand(3, 4), torch.rand(5, 6), k=1)
    with pytest.raises(ValueError, match="k must be"):
        vision.nearest_neighbours(torch.rand(3, 4), torch.rand(5, 4), k=6)
    with pytest.raises(ValueError, match="labels"):
        vision.precision_at_k(torch.rand(5, 4), torch.zeros(4, dtype=torch.long), k=1)


# --------------------------------------------------------------------------- Grad-CAM


def test_grad_cam_weights_are_the_mean_gradient_and_equal_cam_for_a_pooled_linear_head():
    """For global average pooling + a linear layer, ∂y_c/∂A_k(i, j) = W[c, k] / (h·w) everywhere, so
    Grad-CAM = ReLU(Σ_k W[c, k] A_k) / (h·w): the class activation map of Zhou et al. (2016)."""
    torch.manual_seed(1)
    model = vision.ResNet((8, 16)).eval()
    x = _images(7, 4)
    classes = torch.tensor([0, 3, 3, 9])
    maps, logits = vision.grad_cam(model, model.stages, x, classes)
    features = model.features(x).detach()
    cam = torch.relu(torch.einsum("bk,bkhw->bhw", model.head.weight[classes].detach(), features)) / 49
    assert maps.shape == (4, 7, 7)
    assert torch.allclose(maps, cam, atol=1e-6)
    assert torch.allclose(logits, model(x).detach(), atol=1e-6)


def test_grad_cam_lights_the_region_that_decides():
    """Black images with one bright square each, and a model whose score for class 1 is the layer's
    mean brightness (class 0: minus it). Grad-CAM for class 1 lights exactly the square; for class 0,
    whose evidence the square is *against*, the ReLU leaves nothing."""
    class Brightness(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Conv2d(1, 1, 1, bias=False)        # the identity, as a layer with weights
            nn.init.ones_(self.layer.weight)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            brightness = self.layer(x).mean(dim=(1, 2, 3))
            return torch.stack([-brightness, brightness], dim=1)

    model = Brightness()
    x = torch.zeros(3, 1, 28, 28)
    corners = [(2, 3), (15, 20), (9, 9)]
    for image, (row, col) in zip(x, corners):
        image[0, row:row + 6, col:col + 6] = 1.0
    maps, _ = vision.grad_cam(model, model.layer, x, torch.tensor([1, 1, 1]))
    assert maps.shape == (3, 28, 28)
    assert torch.equal(maps > 0, x[:, 0] > 0)
    maps, _ = vision.grad_cam(model, model.layer, x, torch.tensor([0, 0, 0]))
    assert torch.equal(maps, torch.zeros(3, 28, 28))


def test_grad_cam_from_by_hand():
    generator = torch.Generator().manual_seed(9)
    a, g = torch.randn(2, 3, 4, 4, generator=generator), torch.randn(2, 3, 4, 4, generator=generator)
    expected = torch.zeros(2, 4, 4)
    for b in range(2):
        for k in range(3):
            expected[b] += g[b, k].mean() * a[b, k]
    assert torch.allclose(vision.grad_cam_from(a, g), expected.clamp(min=0), atol=1e-6)


def test_grad_cam_leaves_the_model_as_it_was():
    model = vision.ResNet((8, 16)).train()
    vision.grad_cam(model, model.stages, _images(10, 2))
    assert model.training and all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="layer"):
        vision.grad_cam(model, nn.Linear(2, 2), _images(10, 2))
