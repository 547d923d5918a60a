"""oneclass.data on the project's real datasets (materialized from ../shared/data); skipped when absent."""
import pytest
import torch

import datagen
from oneclass import data

pytestmark = [pytest.mark.realdata, pytest.mark.skipif(not (datagen.SHARED_DATA / "materialize.py").exists(),
                                reason=f"real data not found at {datagen.SHARED_DATA}")]

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def root():
    """The materialized real data (written once into the test cache, reused afterwards)."""
    return datagen.materialized_root()


def test_mnist_counts(root):
    train = data.load("mnist", "train", root=root)
    assert train.images.shape == (60000, 1, 28, 28) and train.class_counts() == MNIST_TRAIN
    assert data.load("mnist", "test", root=root).class_counts() == MNIST_TEST


def test_fmnist_counts(root):
    assert data.load("fmnist", "train", root=root).class_counts() == [6000] * 10
    assert data.load("fashion_mnist", "test", root=root).class_counts() == [1000] * 10


def test_cifar10_counts(root):
    train = data.load("cifar10", "train", root=root)
    assert train.images.shape == (50000, 3, 32, 32) and train.class_counts() == [5000] * 10
    assert train.classes == list(data.DATASETS["cifar10"].classes)
    assert data.load("cifar10", "test", root=root).class_counts() == [1000] * 10


def test_cifar10_one_vs_rest(root):
    split = data.one_vs_rest("cifar10", "cat", root=root)
    assert len(split.train) == 5000 and split.train.labels.eq(3).all()
    assert len(split.test) == 10000 and int(split.test.anomaly.sum()) == 9000


def test_tiny_imagenet_outliers(root):
    oe = data.load_outliers("tiny_imagenet", size=32, channels=3, limit=500, seed=0, root=root)
    assert oe.images.shape == (500, 3, 32, 32) and len(set(oe.paths)) == 500
    assert len(oe.classes) == 200 and oe.meta["words"][0]


def test_tiny_imagenet_classes(root):
    s = data.load("tiny_imagenet", "train", root=root)
    assert s.images.shape == (10000, 3, 64, 64) and s.class_counts() == [50] * 200
    assert s.classes == sorted(s.classes)


def test_mvtec_bottle(root):
    split = data.one_vs_rest("mvtec", "bottle", root=root, size=64)
    assert len(split.train) == 209 and split.train.images.shape[1:] == (3, 64, 64)
    test = split.test
    assert len(test) == 83 and test.classes == ["good", "broken_large", "broken_small", "contamination"]
    assert test.class_counts() == [20, 20, 22, 21] and int((test.anomaly == 0).sum()) == 20
    assert test.masks is None and not test.has_masks  # the project's copy has no ground truth
    assert torch.equal(test.anomaly, (test.labels != 0).long())
