"""Tests for stequiv.models: shapes, parameter counts, He-uniform init, registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from stequiv.models import (
    CifarResNet,
    ConvNet,
    ResNet,
    build_model,
    he_uniform_,
    he_uniform_bound,
    list_models,
    resnet18,
    resnet20,
    resnet34,
    resnet50,
)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@pytest.fixture(scope="module")
def r18() -> ResNet:
    return resnet18(generator=_seeded(0))


@pytest.fixture(scope="module")
def r50() -> ResNet:
    return resnet50(generator=_seeded(0))


# ---------------------------------------------------------------- he_uniform


def test_he_uniform_bound_formula() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=(3, 5))
    assert he_uniform_bound(conv.weight) == pytest.approx(math.sqrt(6 / (3 * 3 * 5)))
    lin = nn.Linear(20, 7)
    assert he_uniform_bound(lin.weight) == pytest.approx(math.sqrt(6 / 20))
    grouped = nn.Conv2d(8, 8, kernel_size=3, groups=4)  # fan_in = 8/4 * 9
    assert he_uniform_bound(grouped.weight) == pytest.approx(math.sqrt(6 / 18))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        he_uniform_bound(torch.zeros(5))


def test_he_uniform_is_uniform_and_zeroes_bias() -> None:
    layer = nn.Linear(64, 4096)
    he_uniform_(layer, _seeded(1))
    bound = math.sqrt(6 / 64)
    w = layer.weight.detach().flatten() / bound
    assert w.abs().max() <= 1.0
    assert w.abs().max() > 0.999
    # 10 equal bins on [-1, 1]: each should hold ~10% of 262,144 samples.
    frac = torch.histc(w, bins=10, min=-1.0, max=1.0) / w.numel()
    assert torch.allclose(frac, torch.full_like(frac, 0.1), atol=0.005)
    assert w.mean().abs() < 0.01
    assert w.var().item() == pytest.approx(1 / 3, rel=0.01)
    assert torch.count_nonzero(layer.bias) == 0


def test_he_uniform_global_generator_is_reproducible() -> None:
    torch.manual_seed(5)
    a = he_uniform_(nn.Conv2d(4, 4, 3)).weight.detach().clone()
    torch.manual_seed(5)
    b = he_uniform_(nn.Conv2d(4, 4, 3)).weight.detach().clone()
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["convnet", "resnet20", "resnet18", "resnet50"])
def test_models_respect_he_uniform_bound(name: str, request: pytest.FixtureRequest) -> None:
    if name in ("resnet18", "resnet50"):
        model = request.getfixturevalue(name.replace("resnet", "r"))
    else:
        model = build_model(name, generator=_seeded(0))
    layers = _weighted_layers(model)
    assert layers
    for lname, layer in layers:
        w = layer.weight.detach()
        bound = he_uniform_bound(w)
        assert bound == pytest.approx(math.sqrt(6 / (w.shape[1] * math.prod(w.shape[2:]))))
        assert w.abs().max() <= bound, lname
        # A uniform sample reaches close to the bound and fills the range on both sides.
        if w.numel() >= 1000:
            assert w.abs().max() > 0.98 * bound, lname
            assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.1), lname
        if layer.bias is not None:
            assert torch.count_nonzero(layer.bias) == 0, lname
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1)
        assert torch.all(bn.bias == 0)


def test_resnet_convs_have_no_bias(r18: ResNet) -> None:
    for m in (*r18.modules(), *resnet20().modules()):
        if isinstance(m, nn.Conv2d):
            assert m.bias is None


# ---------------------------------------------------------------- shapes


def test_convnet_shape_and_layers() -> None:
    model = ConvNet()
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert model.quantizable_layers == ("conv1", "conv2", "conv3")
    assert model.classifier == "fc"
    for name in (*model.quantizable_layers, model.classifier):
        assert hasattr(model, name)
    assert [n for n, _ in _weighted_layers(model)] == ["conv1", "conv2", "conv3", "fc"]
    assert model.fc.in_features == 128 * 3 * 3
    assert ConvNet(num_classes=5, in_channels=3)(torch.randn(2, 3, 28, 28)).shape == (2, 5)


def test_resnet20_shape_and_layers() -> None:
    model = resnet20()
    assert isinstance(model, CifarResNet)
    assert model.conv1.in_channels == 1
    assert model.conv1.kernel_size == (3, 3)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [3, 3, 3]
    assert not hasattr(model, "layer4")
    assert model.layer1[0].downsample is None
    for i, width in ((2, 32), (3, 64)):
        proj = getattr(model, f"layer{i}")[0].downsample
        assert isinstance(proj[0], nn.Conv2d) and proj[0].kernel_size == (1, 1)
        assert isinstance(proj[1], nn.BatchNorm2d) and proj[1].num_features == width
    assert model.first_conv == "conv1" and model.classifier == "fc"


@pytest.mark.parametrize("size", [32, 64])
def test_imagenet_resnets_forward(r18: ResNet, r50: ResNet, size: int) -> None:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert r18.eval()(x).shape == (2, 1000)
        assert r50.eval()(x).shape == (2, 1000)
    small = build_model("resnet18", num_classes=10, in_channels=1)
    assert small(torch.randn(2, 1, size, size)).shape == (2, 10)


def test_resnet_layer_names(r18: ResNet, r50: ResNet) -> None:
    top = [n for n, _ in r18.named_children()]
    assert top == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        *(f"layer{i}" for i in range(1, 5)),
        "avgpool",
        "fc",
    ]
    for model in (r18, r50, resnet20()):
        assert model.first_conv == "conv1" and model.classifier == "fc"
        assert isinstance(model.get_submodule(model.first_conv), nn.Conv2d)
        assert isinstance(model.get_submodule(model.classifier), nn.Linear)
    assert r18.conv1.kernel_size == (7, 7) and r18.conv1.stride == (2, 2)
    # torchvision-compatible state_dict keys
    keys18 = set(r18.state_dict())
    assert {
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_mean",
        "layer4.1.bn2.weight",
        "fc.bias",
    } <= keys18
    assert "layer1.0.downsample.0.weight" not in keys18
    keys50 = set(r50.state_dict())
    assert {"layer1.0.downsample.0.weight", "layer3.5.conv3.weight", "layer4.2.bn3.bias"} <= keys50


# ---------------------------------------------------------------- parameter counts


def test_parameter_counts(r18: ResNet, r50: ResNet) -> None:
    # Chollet's MNIST convnet: conv 320 + 18,496 + 73,856 = 92,672; fc 1,152 * 10 + 10.
    convnet = ConvNet()
    conv_only = sum(_n_params(getattr(convnet, n)) for n in convnet.quantizable_layers)
    assert conv_only == 92_672
    assert _n_params(convnet) == 104_202
    # torchvision's counts (3 input channels, 1000 classes)
    assert _n_params(r18) == 11_689_512
    assert _n_params(resnet34()) == 21_797_672
    assert _n_params(r50) == 25_557_032
    # CIFAR ResNet-20 with projection shortcuts, 1 input channel, 10 classes
    n20 = _n_params(resnet20())
    assert n20 == 272_186
    assert 0.26e6 < n20 < 0.28e6


# ---------------------------------------------------------------- registry


def test_list_models() -> None:
    assert list_models() == ["convnet", "resnet18", "resnet20", "resnet34", "resnet50",
                             "transformer-small", "transformer-tiny"]


@pytest.mark.parametrize(
    ("name", "cls"), [("convnet", ConvNet), ("resnet20", CifarResNet), ("ResNet18", ResNet)]
)
def test_build_model_types(name: str, cls: type[nn.Module]) -> None:
    model = build_model(name, num_classes=7, in_channels=2)
    assert isinstance(model, cls)
    assert model.conv1.in_channels == 2
    assert model.fc.out_features == 7


@pytest.mark.parametrize("name", ["convnet", "resnet20"])
def test_build_model_deterministic(name: str) -> None:
    a = build_model(name, generator=_seeded(123)).state_dict()
    b = build_model(name, generator=_seeded(123)).state_dict()
    c = build_model(name, generator=_seeded(124)).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_build_model_deterministic_resnet18(r18: ResNet) -> None:
    other = resnet18(generator=_seeded(0)).state_dict()
    assert all(torch.equal(v, other[k]) for k, v in r18.state_dict().items())


def test_build_model_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*Did you mean 'resnet18'\?"):
        build_model("resnet19")
    with pytest.raises(ValueError, match=r"valid names are: convnet, resnet18, resnet20"):
        build_model("vgg16")


def test_global_pool_is_the_adaptive_average_pool() -> None:
    """ResNets pool by a plain mean (AdaptiveAvgPool2d's CUDA backward is not deterministic)."""
    from stequiv.models.internal import GlobalAvgPool

    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(GlobalAvgPool()(x), nn.functional.adaptive_avg_pool2d(x, 1))


def _pool_inputs(shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Inputs to a pool after a ReLU, ties of every kind included: zeros (what ReLU leaves),
    few distinct values (a quantized net's activations), and windows all equal."""
    g = _seeded(3)
    return {"relu of normal": torch.randn(shape, generator=g).relu(),
            "three levels": torch.randint(0, 3, shape, generator=g).float(),
            "quantized": (2 * torch.randn(shape, generator=g)).round().relu() * 0.25,
            "zeros": torch.zeros(shape),
            "negative": -torch.rand(shape, generator=g)}


@pytest.mark.parametrize("shape", [(4, 3, 26, 26), (4, 5, 11, 11), (2, 1, 7, 4)])
def test_channels_last_pool_gives_max_pool2d_values_and_gradients_bit_for_bit(shape) -> None:
    """Same values, and each window's gradient on the same element (the first maximum in
    row-major order, also among ties); odd sizes drop the last row/column as MaxPool2d does."""
    from stequiv.models._pool import ChannelsLastMaxPool2d

    fast, reference = ChannelsLastMaxPool2d(2), nn.MaxPool2d(2)
    for name, x in _pool_inputs(shape).items():
        grad = torch.randn(reference(x).shape, generator=_seeded(4))
        results = []
        for pool in (fast, reference):
            leaf = x.clone().requires_grad_()
            out = pool(leaf)
            out.backward(grad)
            results.append((out.detach(), leaf.grad))
        for got, want in zip(results[0], results[1], strict=True):
            assert got.is_contiguous() and torch.equal(got, want), name
        with torch.no_grad():
            assert torch.equal(fast(x), reference(x)), name


def test_convnet_pools_are_max_pools_with_the_same_state() -> None:
    from stequiv.models._pool import ChannelsLastMaxPool2d

    net = ConvNet(generator=_seeded())
    assert isinstance(net.pool1, ChannelsLastMaxPool2d) and isinstance(net.pool1, nn.MaxPool2d)
    assert net.pool1.kernel_size == 2 and net.pool1.stride == 2
    assert not list(net.pool1.state_dict())  # a checkpoint of the ConvNet is unchanged


def test_channels_last_pool_under_vmap_is_max_pool2d() -> None:
    """Inside ``torch.func.vmap`` (the study's batched nets) the pool falls back to
    ``F.max_pool2d``, which vmap knows."""
    from stequiv.models._pool import ChannelsLastMaxPool2d

    x = torch.randn(3, 2, 4, 6, 6, generator=_seeded(5))
    got = torch.func.vmap(ChannelsLastMaxPool2d(2))(x)
    assert torch.equal(got, torch.stack([nn.MaxPool2d(2)(xi) for xi in x]))
