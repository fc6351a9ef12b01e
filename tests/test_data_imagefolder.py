"""ImageFolderDataset on tiny PNG/JPEG folders generated with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from stequiv.data import IMAGENET_MEAN, IMAGENET_STD, DataError, ImageFolderDataset

# (class, file name, size (w, h)): mixed formats, sizes and aspect ratios, one extreme.
IMAGES = [
    ("cat", "a.png", (40, 50)),
    ("cat", "b.JPG", (64, 30)),
    ("dog", "c.jpeg", (33, 33)),
    ("dog", "d.png", (120, 20)),
    ("fish", "e.jpg", (50, 40)),
]
SOLID = (200, 30, 90)


def make_image(path: Path, size: tuple[int, int], seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for split in ("train", "val"):
        for seed, (cls, name, size) in enumerate(IMAGES):
            (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
            make_image(tmp_path / split / cls / name, size, seed)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("split", ["train", "val"])
def test_shapes_and_classes(root: Path, split: str) -> None:
    data = ImageFolderDataset(root, split, image_size=32)
    assert data.classes == ["cat", "dog", "fish"]
    assert (len(data), data.num_classes, data.train_augment) == (5, 3, split == "train")
    assert [label for _, label in data.samples] == [0, 0, 1, 1, 2]
    for index in range(len(data)):
        image, label = data[index]
        assert image.shape == (3, 32, 32)
        assert image.dtype == torch.float32
        assert label == data.samples[index][1]
    images, labels = next(iter(DataLoader(data, batch_size=5)))
    assert images.shape == (5, 3, 32, 32)
    assert labels.tolist() == [0, 0, 1, 1, 2]


def test_normalisation_of_a_solid_colour(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / "val" / cls).mkdir(parents=True)
        Image.new("RGB", (45, 37), SOLID).save(tmp_path / "val" / cls / "x.png")
    expected = (torch.tensor(SOLID) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(
        IMAGENET_STD
    )
    for augment in (False, True):
        image, _ = ImageFolderDataset(tmp_path, "val", train_augment=augment, image_size=16)[0]
        torch.testing.assert_close(image, expected.view(3, 1, 1).expand(3, 16, 16))


def test_eval_is_a_centre_crop_of_the_resized_image(root: Path) -> None:
    """Eval resizes the shorter side to round(24 * 256 / 224) = 27 and crops the centre 24^2."""
    data = ImageFolderDataset(root, "val", image_size=24)
    path = data.samples[0][0]  # 40 x 50 -> 27 x 33, crop box (2, 4, 26, 28)
    with Image.open(path) as image:
        resized = image.convert("RGB").resize((27, 33), Image.Resampling.BILINEAR)
    expected = torch.from_numpy(np.array(resized.crop((2, 4, 26, 28)))).permute(2, 0, 1) / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(data[0][0], (expected - mean) / std)


def test_train_augmentation_is_deterministic(root: Path) -> None:
    def draw(data: ImageFolderDataset) -> torch.Tensor:
        return torch.stack([data[i][0] for i in range(len(data))])

    first = draw(ImageFolderDataset(root, "train", image_size=32, seed=1))
    assert first.equal(draw(ImageFolderDataset(root, "train", image_size=32, seed=1)))
    assert not first.equal(draw(ImageFolderDataset(root, "train", image_size=32, seed=2)))
    data = ImageFolderDataset(root, "train", image_size=32, seed=1)
    data.set_epoch(1)
    assert not first.equal(draw(data))
    data.set_epoch(0)
    assert first.equal(draw(data))
    # Same result whatever the access order, and from an explicit generator.
    assert data[3][0].equal(first[3])
    assert data[-1][0].equal(first[4])
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert data.load(2, g1)[0].equal(data.load(2, g2)[0])


def test_train_flips_half_of_the_time(tmp_path: Path) -> None:
    """A left-to-right ramp stays increasing under any crop; a flip makes it decreasing."""
    ramp = np.repeat(np.repeat(np.arange(0, 256, 4, dtype=np.uint8)[None, :, None], 64, 0), 3, 2)
    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        Image.fromarray(ramp).save(tmp_path / "train" / cls / "ramp.png")
    data = ImageFolderDataset(tmp_path, "train", image_size=16)
    flips = []
    for epoch in range(40):
        data.set_epoch(epoch)
        image = data[0][0]
        flips.append(bool(image[0, 0, 0] > image[0, 0, -1]))
    assert 10 <= sum(flips) <= 30


def test_eval_ignores_seed_and_epoch(root: Path) -> None:
    data = ImageFolderDataset(root, "val", image_size=32, seed=1)
    first = data[0][0]
    data.set_epoch(5)
    assert data[0][0].equal(first)
    assert ImageFolderDataset(root, "val", image_size=32, seed=9)[0][0].equal(first)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image folder '.*train' does not exist"):
        ImageFolderDataset(tmp_path, "train")
    (tmp_path / "train" / "only").mkdir(parents=True)
    make_image(tmp_path / "train" / "only" / "x.png", (8, 8), 0)
    with pytest.raises(DataError, match=r"has 1 class folder\(s\) \['only'\]; .* at least 2"):
        ImageFolderDataset(tmp_path, "train")
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder\(s\) \['empty'\] in .* hold no images"):
        ImageFolderDataset(tmp_path, "train")
    (tmp_path / "train" / "empty" / "broken.jpg").write_bytes(b"not a jpeg")
    data = ImageFolderDataset(tmp_path, "train", image_size=8)
    with pytest.raises(DataError, match=r"cannot decode image '.*broken\.jpg'"):
        data[0]
    with pytest.raises(IndexError, match="`index` 2 out of range for 2 images"):
        data[2]
    with pytest.raises(DataError, match=r"`epoch` must be a non-negative int, got -3"):
        data.set_epoch(-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 0}, r"`image_size` must be a positive int, got 0"),
        ({"image_size": 32.0}, r"`image_size` must be a positive int, got 32\.0"),
        ({"seed": -1}, r"`seed` must be a non-negative int, got -1"),
    ],
)
def test_bad_arguments(root: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        ImageFolderDataset(root, "train", **kwargs)  # type: ignore[arg-type]
