"""oneclass.data on tiny datasets that datagen writes in each real on-disk layout."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datagen
from oneclass import data


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test may reach for the network; the download path is tested with a stub."""
    monkeypatch.setenv("ONECLASS_DOWNLOAD", "0")
    monkeypatch.delenv("ONECLASS_DATA", raising=False)


# ----------------------------------------------------------------------------------------------- basics

def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert data.data_root() == tmp_path / "data"
    monkeypatch.setenv("ONECLASS_DATA", str(tmp_path / "env"))
    assert data.data_root() == tmp_path / "env"
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data.data_root("rel") == tmp_path / "rel"


@pytest.mark.parametrize("name, slug", [("T-shirt/top", "t-shirt-top"), ("Ankle boot", "ankle-boot"),
                                        ("metal_nut", "metal_nut"), ("large_man-made_outdoor_things",
                                                                     "large_man-made_outdoor_things"), ("3", "3")])
def test_class_slug(name, slug):
    assert data.class_slug(name) == slug


def test_catalog():
    sizes = {"mnist": 10, "fmnist": 10, "emnist_letters": 26, "cifar10": 10, "cifar100": 100,
             "cifar100_coarse": 20, "mvtec": 15, "voc2007": 2, "catsvsdogs": 2}
    for name, n in sizes.items():
        assert len(data.DATASETS[name].classes) == n
        assert len(set(data.DATASETS[name].classes)) == n
    for name in ("tiny_imagenet", "imagenet30", "imagenet22k", "imagenet1k_val"):
        assert data.DATASETS[name].classes is None
    assert data.DATASETS["fmnist"].classes[0] == "T-shirt/top"
    assert data.classes("Fashion-MNIST") == list(data.DATASETS["fmnist"].classes)
    assert len(data.IMAGENET30_CLASSES) == 30
    with pytest.raises(ValueError, match="known datasets"):
        data.load("svhn")


# ----------------------------------------------------------------------------------------------- idx

@pytest.mark.parametrize("name, writer, gz", [("mnist", datagen.write_mnist_like, False),
                                              ("fmnist", datagen.write_fmnist_like, True)])
def test_idx_datasets(tmp_path, name, writer, gz):
    written = writer(tmp_path, gz=gz)
    for split in ("train", "test"):
        s = data.load(name, split, root=tmp_path)
        x, y = written[split]
        assert s.images.dtype == torch.uint8 and s.images.shape == (len(x), 1, 28, 28)
        assert s.images.is_contiguous() and s.labels.dtype == torch.int64
        assert np.array_equal(s.images[:, 0].numpy(), x)
        assert s.labels.tolist() == y.tolist()
        assert s.images[0, 0, 3, 5] == 255 and int(s.images[0].sum()) == 255
        assert s.classes == list(data.DATASETS[name].classes) and s.name == name
        assert s.masks is None and s.anomaly is None


def test_emnist_letters_are_upright_and_zero_based(tmp_path):
    written = datagen.write_emnist_letters_like(tmp_path)
    s = data.load("emnist_letters", "train", root=tmp_path)
    upright, labels = written["train"]
    assert np.array_equal(s.images[:, 0].numpy(), upright)
    assert s.images[0, 0, 2, 20] == 255 and s.images[0, 0, 20, 2] == 0
    assert s.labels.tolist() == labels.tolist() and s.classes[0] == "a" and s.classes[25] == "z"
    assert data.resolve_class("emnist_letters", "C") == 2


def test_truncated_idx_is_corrupt(tmp_path):
    written = datagen.write_mnist_like(tmp_path)
    path = written["files"][0]
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(data.CorruptImageError) as e:
        data.load("mnist", root=tmp_path)
    assert str(path) in str(e.value) and "re-download" in str(e.value)


def test_idx_with_a_bad_magic_number_is_corrupt(tmp_path):
    written = datagen.write_mnist_like(tmp_path)
    path = written["files"][0]
    raw = bytearray(path.read_bytes())
    raw[:4] = b"\x89PNG"              # not 0x00 0x00 <type> <ndim>: e.g. an image saved under the idx name
    path.write_bytes(bytes(raw))
    with pytest.raises(data.CorruptImageError, match="bad magic number") as e:
        data.load("mnist", root=tmp_path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("damage, expected", [
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable CIFAR pickle"),
    (lambda p: p.write_bytes(__import__("pickle").dumps([1, 2, 3])), "expected a dict in the pickle, found list"),
    (lambda p: p.write_bytes(__import__("pickle").dumps({"data": 1})), "missing 'data' or 'labels'"),
])
def test_corrupt_cifar_pickle_names_the_file_and_the_problem(tmp_path, damage, expected):
    datagen.write_cifar10_like(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    damage(path)
    with pytest.raises(data.CorruptImageError, match=expected) as e:
        data.load("cifar10", "train", root=tmp_path)
    assert str(path) in str(e.value)


def test_class_names_match_exactly_then_loosely_and_ambiguity_is_an_error():
    names = ["T-shirt/top", "Trouser", "bird", "Widget", "widget"]
    assert data.match_class("x", names, "T-shirt/top") == 0
    assert data.match_class("x", names, "t-shirt/top") == 0      # case
    assert data.match_class("x", names, "t_shirt_top") == 0      # the folder slug runs are saved under
    assert data.match_class("x", names, "TShirtTop") == 0        # letters and digits only
    assert data.match_class("x", names, "Widget") == 3           # an exact match wins over a case-folded pair
    with pytest.raises(data.UnknownClassError, match=r"'WIDGET' is ambiguous .*matches 'Widget', 'widget'"):
        data.match_class("x", names, "WIDGET")
    with pytest.raises(data.UnknownClassError, match="unknown class 'shirt'.*0 'T-shirt/top'"):
        data.match_class("x", names, "shirt")
    assert data.resolve_class("fashion_mnist", "T-shirt/top") == 0
    assert data.resolve_class("fashion_mnist", "t_shirt_top") == 0


def test_resize_and_channels_of_tensor_datasets(tmp_path):
    datagen.write_mnist_like(tmp_path, n_train=6)
    s = data.load("mnist", root=tmp_path, size=32, channels=3)
    assert s.images.shape == (6, 3, 32, 32) and s.images.dtype == torch.uint8
    assert torch.equal(s.images[:, 0], s.images[:, 1]) and torch.equal(s.images[:, 0], s.images[:, 2])
    f = s.float()
    assert f.dtype == torch.float32 and 0 <= f.min() and f.max() <= 1
    blank = data.load("mnist", root=tmp_path, size=14).images[0]
    assert blank.shape == (1, 14, 14) and blank.max() > 0  # the lit pixel survives antialiased downscaling


def test_rgb_to_gray_matches_pil():
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    ours = data.to_channels(torch.from_numpy(rgb).permute(2, 0, 1)[None], 1)[0, 0].numpy()
    assert np.array_equal(ours, np.asarray(Image.fromarray(rgb).convert("L")))


# ----------------------------------------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10(tmp_path, bytes_keys):
    written = datagen.write_cifar10_like(tmp_path, bytes_keys=bytes_keys)
    for split in ("train", "test"):
        s = data.load("cifar10", split, root=tmp_path)
        x, y = written[split]
        assert s.images.shape == (len(x), 3, 32, 32)
        assert np.array_equal(s.images.numpy(), x) and s.labels.tolist() == y.tolist()
        assert s.classes == written["classes"]
    assert len(data.load("cifar10", root=tmp_path)) == 20


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, bytes_keys):
    written = datagen.write_cifar100_like(tmp_path, bytes_keys=bytes_keys)
    fine = data.load("cifar100", "test", root=tmp_path)
    coarse = data.load("cifar100_coarse", "test", root=tmp_path)
    x, f, c = written["test"]
    assert np.array_equal(fine.images.numpy(), x) and torch.equal(fine.images, coarse.images)
    assert fine.labels.tolist() == f.tolist() and coarse.labels.tolist() == c.tolist()
    assert len(fine.classes) == 100 and coarse.classes == written["coarse_names"]
    assert data.resolve_class("cifar100_coarse", "vehicles 1") == 18


# ----------------------------------------------------------------------------------------------- folders

def test_tiny_imagenet(tmp_path):
    written = datagen.write_tiny_imagenet_like(tmp_path)
    assert data.classes("tiny_imagenet", root=tmp_path) == ["n01", "n02", "n03"]
    s = data.load("tiny_imagenet", root=tmp_path)
    assert s.images.shape == (9, 3, 64, 64) and s.classes == written["classes"]
    assert s.meta["words"] == written["words"]
    for img, label, (path, want_label, grey) in zip(s.images, s.labels, written["train"]):
        assert label == want_label
        assert abs(img.float().mean() - grey) < 2
    gray = s.images[2]  # written as a grayscale JPEG, returned as RGB with equal channels
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    val = data.load("tiny_imagenet", "val", root=tmp_path, size=16, channels=1)
    assert val.images.shape == (6, 1, 16, 16)
    assert val.labels.tolist() == [lab for _, lab, _ in written["val"]]


def test_imagenet_folder_trees(tmp_path):
    i30 = datagen.write_imagenet30_like(tmp_path)
    test = data.load("imagenet30", "test", root=tmp_path, size=8)
    assert test.images.shape == (6, 3, 8, 8) and test.classes == i30["classes"]
    assert test.labels.tolist() == [lab for _, lab, _ in i30["test"]]
    assert test.paths == [str(p) for p, _, _ in i30["test"]]
    colour = torch.tensor(i30["test"][3][2], dtype=torch.float32)
    assert (test.images[3].float().mean((1, 2)) - colour).abs().max() < 3
    i22 = datagen.write_imagenet22k_like(tmp_path)
    assert data.classes("imagenet22k", root=tmp_path) == i22["classes"]
    assert len(data.load("imagenet22k", root=tmp_path, size=8)) == 12
    val = datagen.write_imagenet1k_val_like(tmp_path)
    assert data.load("imagenet1k_val", "val", root=tmp_path, size=8).class_counts() == [2, 2]
    assert val["classes"] == data.classes("imagenet1k_val", root=tmp_path)


def test_catsvsdogs_split_and_crop(tmp_path):
    written = datagen.write_petimages_like(tmp_path, n_per_class=12)
    train = data.load("catsvsdogs", "train", root=tmp_path, size=16)
    test = data.load("catsvsdogs", "test", root=tmp_path, size=16)
    assert train.class_counts() == [10, 10] and test.class_counts() == [2, 2]
    # natural order: 0..11, so positions 4 and 9 are 4.jpg and 9.jpg (not '2.jpg' of lexicographic order)
    assert [Path(p).name for p in test.paths] == ["4.jpg", "9.jpg"] * 2
    assert not set(train.paths) & set(test.paths)
    assert test.images.shape == (4, 3, 16, 16)
    assert test.images[0, 0].float().mean() > 150 and test.images[2, 2].float().mean() > 150  # red cat, blue dog
    assert data.resolve_class("catsvsdogs", "dog") == 1
    assert written["Cat"][0].exists()


def test_corrupt_image_is_named_or_skipped(tmp_path):
    written = datagen.write_petimages_like(tmp_path, corrupt="Cat")
    with pytest.raises(data.CorruptImageError) as e:
        data.load("catsvsdogs", "train", root=tmp_path, size=8)
    assert str(written["corrupt"]) in str(e.value) and "delete" in str(e.value)
    s = data.load("catsvsdogs", "train", root=tmp_path, size=8, skip_corrupt=True)
    assert s.class_counts() == [7, 8] and s.meta["skipped"] == [str(written["corrupt"])]
    assert str(written["corrupt"]) not in s.paths and len(s.paths) == len(s)


def test_variable_sizes_need_size(tmp_path):
    datagen.write_petimages_like(tmp_path)
    with pytest.raises(ValueError, match="size="):
        data.load("catsvsdogs", root=tmp_path)


def test_non_square_grayscale_resize(tmp_path):
    files = datagen.write_gray_jpegs(tmp_path / "gray", value=128)
    s = data.load_outliers(tmp_path / "gray", size=16, channels=1)
    assert s.images.shape == (len(files), 1, 16, 16) and s.paths == sorted(str(p) for p in files)
    assert (s.images.float() - 128).abs().max() <= 2
    rgb = data.load_outliers(str(tmp_path / "gray"), size=10, channels=3)
    assert rgb.images.shape == (3, 3, 10, 10) and torch.equal(rgb.images[:, 0], rgb.images[:, 2])


def test_voc_horses(tmp_path):
    written = datagen.write_voc_like(tmp_path)
    test = data.load("voc2007", "test", root=tmp_path, size=12)
    assert test.images.shape == (6, 3, 12, 12) and test.classes == ["other", "horse"]
    want = [int(i in written["horse"]) for i in written["ids"]]
    assert test.labels.tolist() == want and test.anomaly.tolist() == want
    train = data.load("voc2007", "train", root=tmp_path, size=12)
    assert [Path(p).stem for p in train.paths] == written["splits"]["train"]
    split = data.one_vs_rest("voc2007", "other", root=tmp_path, size=12)
    assert split.train.labels.tolist() == [0, 0] and int(split.test.anomaly.sum()) == 2


# ----------------------------------------------------------------------------------------------- MVTec

def test_mvtec_with_masks(tmp_path):
    written = datagen.write_mvtec_like(tmp_path, size=(32, 24))
    test = data.load_mvtec("widget", "test", root=tmp_path)
    assert test.classes == ["good", "crack", "hole"] and test.images.shape == (5, 3, 24, 32)
    assert test.labels.tolist() == [lab for _, lab, _ in written["test"]]
    assert test.anomaly.tolist() == [int(lab != 0) for _, lab, _ in written["test"]]
    assert test.has_masks and test.masks.dtype == torch.uint8 and test.masks.shape == (5, 1, 24, 32)
    for mask, (_, _, box) in zip(test.masks, written["test"]):
        want = torch.zeros(24, 32, dtype=torch.uint8)
        if box:
            want[box[0]:box[1], box[2]:box[3]] = 1
        assert torch.equal(mask[0], want)
    small = data.load_mvtec("widget", "test", root=tmp_path, size=16)
    assert small.masks.shape == (5, 1, 16, 16) and set(small.masks.unique().tolist()) == {0, 1}
    assert small.masks[:2].sum() == 0 and (small.masks[2:].flatten(1).sum(1) > 0).all()
    train = data.load_mvtec("widget", "train", root=tmp_path)
    assert len(train) == 3 and train.labels.tolist() == [0, 0, 0] and train.masks.sum() == 0
    assert train.classes == test.classes


def test_mvtec_gray_without_masks_and_own_folder(tmp_path):
    written = datagen.write_mvtec_like(tmp_path, folder=tmp_path / "mine" / "screwish", gray=True,
                                       masks=False, ext=".jpg")
    s = data.load_mvtec_folder(written["folder"], "test")
    assert s.images.shape[1] == 1 and s.masks is None and not s.has_masks
    assert "ground_truth" in s.meta["masks_missing"] and s.meta["category"] == "screwish"
    assert data.load_mvtec_folder(written["folder"], "train", channels=3, size=8).images.shape == (3, 3, 8, 8)


def test_mvtec_categories_and_one_vs_rest(tmp_path):
    datagen.write_mvtec_like(tmp_path, category="widget")
    cats = data.classes("mvtec", root=tmp_path)
    assert cats[:15] == list(data.DATASETS["mvtec"].classes) and cats[15:] == ["widget"]
    assert data.resolve_class("mvtec", "Widget", root=tmp_path) == 15
    assert data.load_mvtec("WIDGET", "train", root=tmp_path).meta["category"] == "widget"
    split = data.one_vs_rest("mvtec", "widget", root=tmp_path, size=16)
    assert split.normal == [15] and split.normal_names == ["widget"]
    assert len(split.train) == 3 and split.train.anomaly.sum() == 0
    assert len(split.test) == 5 and split.test.anomaly.sum() == 3
    with pytest.raises(data.DatasetMissingError, match="bottle"):
        data.one_vs_rest("mvtec", "bottle", root=tmp_path)
    with pytest.raises(ValueError, match="load_mvtec"):
        data.load("mvtec", root=tmp_path)


def test_subset_keeps_fields_aligned(tmp_path):
    datagen.write_mvtec_like(tmp_path)
    s = data.load_mvtec("widget", "test", root=tmp_path)
    for index in ([4, 0], torch.tensor([4, 0]), np.array([4, 0])):
        sub = s.subset(index)
        assert sub.paths == [s.paths[4], s.paths[0]]
        assert torch.equal(sub.images[0], s.images[4]) and torch.equal(sub.masks[0], s.masks[4])
        assert sub.labels.tolist() == [s.labels[4], s.labels[0]] and sub.anomaly.tolist() == [1, 0]
    by_mask = s.subset(s.anomaly == 1)
    assert len(by_mask) == 3 and by_mask.anomaly.all() and by_mask.masks.flatten(1).sum(1).min() > 0
    sliced = s.subset(slice(1, 3))
    assert sliced.paths == s.paths[1:3] and torch.equal(sliced.labels, s.labels[1:3])
    assert len(s.subset([])) == 0


# ----------------------------------------------------------------------------------------------- one vs rest

def test_one_vs_rest_single_and_multi_class(tmp_path):
    written = datagen.write_fmnist_like(tmp_path, n_train=40, n_test=30)
    split = data.one_vs_rest("fmnist", "t-shirt-top", root=tmp_path)
    assert split.normal == [0] and split.normal_names == ["T-shirt/top"]
    assert len(split.train) == 4 and split.train.labels.eq(0).all() and split.train.anomaly.sum() == 0
    assert len(split.test) == 30 and int(split.test.anomaly.sum()) == 27
    x, y = written["train"]
    assert np.array_equal(split.train.images[:, 0].numpy(), x[y == 0])
    multi = data.one_vs_rest("fmnist", ["Trouser", 8, "bag"], root=tmp_path, size=32, channels=3)
    assert multi.normal == [1, 8] and multi.normal_names == ["Trouser", "Bag"]
    assert sorted(set(multi.train.labels.tolist())) == [1, 8] and len(multi.train) == 8
    assert multi.train.images.shape[1:] == (3, 32, 32)
    assert multi.test.anomaly.tolist() == [int(lab not in (1, 8)) for lab in written["test"][1]]


def test_one_vs_rest_rejects_bad_nominal_sets(tmp_path):
    datagen.write_mnist_like(tmp_path)
    with pytest.raises(ValueError, match="empty nominal set"):
        data.one_vs_rest("mnist", [], root=tmp_path)
    with pytest.raises(ValueError, match="no anomalies"):
        data.one_vs_rest("mnist", list(range(10)), root=tmp_path)
    with pytest.raises(ValueError, match="no test split"):
        data.one_vs_rest("imagenet22k", 0, root=tmp_path)


def test_unknown_classes_list_valid_ones():
    with pytest.raises(data.UnknownClassError) as e:
        data.resolve_class("cifar10", "plane")
    assert isinstance(e.value, ValueError) and isinstance(e.value, KeyError)
    assert "0 'airplane'" in str(e.value) and "9 'truck'" in str(e.value)
    with pytest.raises(data.UnknownClassError, match="out of range.*0 'airplane'"):
        data.resolve_class("cifar10", 10)
    with pytest.raises(KeyError):
        data.resolve_class("cifar10", -1)
    with pytest.raises(TypeError):
        data.resolve_class("cifar10", 2.0)
    assert data.resolve_class("cifar10", "Truck") == 9
    assert data.resolve_class("cifar10", np.int64(3)) == 3
    assert data.resolve_class("cifar10", "3") == 3
    assert data.resolve_class("mnist", "7") == 7


# ----------------------------------------------------------------------------------------------- missing data

def test_missing_root_names_the_files(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(data.DatasetMissingError) as e:
        data.load("mnist", root=root)
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    assert str(root / "MNIST" / "raw" / "train-images-idx3-ubyte") in msg and "does not exist" in msg
    assert "ONECLASS_DATA" in msg and "torchvision.datasets.MNIST" in msg
    for name in ("cifar10", "tiny_imagenet", "imagenet30", "voc2007", "catsvsdogs"):
        with pytest.raises(data.DatasetMissingError, match="ONECLASS_DATA"):
            data.load(name, "train", root=root)
    assert not root.exists()


def test_one_missing_file(tmp_path):
    datagen.write_mnist_like(tmp_path)
    gone = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    gone.unlink()
    assert len(data.load("mnist", "train", root=tmp_path)) == 20
    with pytest.raises(data.DatasetMissingError) as e:
        data.load("mnist", "test", root=tmp_path)
    assert str(gone) in str(e.value) and "does not exist" not in str(e.value)
    assert e.value.missing == (gone,)


def test_missing_class_folder_and_mask(tmp_path):
    datagen.write_tiny_imagenet_like(tmp_path, wnids=("n01", "n02"))
    (tmp_path / "tiny-imagenet-200" / "wnids.txt").write_text("n01\nn02\nn05\n")
    with pytest.raises(data.DatasetMissingError, match="train/n05"):
        data.load("tiny_imagenet", root=tmp_path)
    written = datagen.write_mvtec_like(tmp_path)
    mask = written["folder"] / "ground_truth" / "hole" / "000_mask.png"
    mask.unlink()
    with pytest.raises(data.DatasetMissingError, match=str(mask)):
        data.load_mvtec("widget", "test", root=tmp_path)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    calls = []

    def offline_download(dataset, root):
        calls.append(dataset)
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(data.download, "torchvision_download", offline_download)
    with pytest.raises(data.DatasetMissingError, match="(?s)Automatic download failed.*Name or service"):
        data.load("cifar100", root=tmp_path, download=True)
    assert calls == ["cifar100"]
    with pytest.raises(data.DatasetMissingError):
        data.load("cifar100", root=tmp_path)  # ONECLASS_DOWNLOAD=0: no attempt
    with pytest.raises(data.DatasetMissingError):
        data.load("imagenet30", root=tmp_path, download=True)  # no downloader exists for it
    assert calls == ["cifar100"]
    with pytest.raises(data.DatasetMissingError, match="tiny-imagenet-200.zip"):
        data.load("tiny_imagenet", root=tmp_path, download=True)  # fetched as the cs231n archive
    assert calls == ["cifar100", "tiny_imagenet"]


def test_download_that_writes_the_files_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(data.download, "torchvision_download",
                        lambda dataset, root: datagen.write_mnist_like(root, n_train=5))
    assert len(data.load("mnist", root=tmp_path, download=True)) == 5


# ----------------------------------------------------------------------------------------------- outliers

def test_outliers_from_tensor_dataset(tmp_path):
    datagen.write_cifar100_like(tmp_path, n_train=40)
    oe = data.load_outliers("cifar100", size=16, channels=1, limit=10, seed=3, root=tmp_path,
                            exclude=["apple", "not-a-class"])
    assert oe.images.shape == (10, 1, 16, 16) and 0 not in oe.labels.tolist()
    assert oe.meta["excluded"] == ["apple"]
    assert len({bytes(x.numpy()) for x in oe.images}) == 10
    again = data.load_outliers("cifar100", size=16, channels=1, limit=10, seed=3, root=tmp_path, exclude=["apple"])
    other = data.load_outliers("cifar100", size=16, channels=1, limit=10, seed=4, root=tmp_path, exclude=["apple"])
    assert torch.equal(oe.images, again.images) and not torch.equal(oe.images, other.images)
    with pytest.raises(ValueError, match="only 39 usable"):
        data.load_outliers("cifar100", size=16, channels=1, limit=50, root=tmp_path, exclude=["apple"])


def test_outliers_from_folder_corpus(tmp_path):
    written = datagen.write_imagenet22k_like(tmp_path, n=3)
    oe = data.load_outliers("imagenet22k", size=8, channels=3, limit=5, exclude=["n002"], root=tmp_path)
    assert oe.images.shape == (5, 3, 8, 8) and 1 not in oe.labels.tolist()
    assert len(set(oe.paths)) == 5 and oe.paths == sorted(oe.paths)
    by_path = {str(p): colour for p, _, colour in written["train"]}
    for img, path in zip(oe.images, oe.paths):
        assert (img.float().mean((1, 2)) - torch.tensor(by_path[path], dtype=torch.float32)).abs().max() < 3
    everything = data.load_outliers(tmp_path / "imagenet22k", size=8, channels=3)
    assert len(everything) == 12 and everything.classes == written["classes"]


def test_outliers_replace_skipped_corrupt_files(tmp_path):
    written = datagen.write_petimages_like(tmp_path, corrupt="Cat")
    folder = tmp_path / "PetImages"
    with pytest.raises(data.CorruptImageError):
        data.load_outliers(folder, size=8, channels=3)
    oe = data.load_outliers(folder, size=8, channels=3, limit=19, skip_corrupt=True)
    assert len(oe) == 19 and str(written["corrupt"]) not in oe.paths
    assert oe.meta["skipped"] == [str(written["corrupt"])]
    assert len(data.load_outliers(folder, size=8, channels=3, skip_corrupt=True)) == 19
    with pytest.raises(ValueError, match="only 19 usable"):
        data.load_outliers(folder, size=8, channels=3, limit=20, skip_corrupt=True)


def test_subsample_keeps_every_class_and_the_anomaly_proportion():
    labels = torch.tensor([0] * 10 + [1] * 45 + [2] * 45)
    s = data.ImageSet(images=torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), labels=labels,
                      classes=["a", "b", "c"], name="toy", anomaly=(labels > 0).long())
    sub = data.subsample(s, 20, seed=0)
    assert len(sub) == 20 and sub.labels.bincount().tolist() == [2, 9, 9] and int(sub.anomaly.sum()) == 18
    assert torch.equal(sub.images.flatten().long(), torch.sort(sub.images.flatten().long()).values)  # order kept
    tiny = data.subsample(s, 3, seed=0)
    assert set(tiny.labels.tolist()) == {0, 1, 2}, "every class keeps at least one image"
    odd = data.ImageSet(images=torch.zeros(100, 1, 1, 1, dtype=torch.uint8), labels=torch.arange(100) % 7,
                        classes=list("abcdefg"), name="toy")
    assert [len(data.subsample(odd, n, seed=0)) for n in (7, 10, 33, 99)] == [7, 10, 33, 99]   # exactly
    assert torch.equal(data.subsample(s, 20, seed=0).images, sub.images)
    assert not torch.equal(data.subsample(s, 20, seed=1).images, sub.images)
    assert data.subsample(s, None) is s and data.subsample(s, 500) is s
    with pytest.raises(ValueError, match="positive"):
        data.subsample(s, 0)


def test_cifar10_overlap_drops_exactly_the_named_tiny_imagenet_classes(tmp_path):
    """'cifar10_overlap' removes the 22 listed wnids (here 3 of them exist) and nothing else; the wide list adds the
    6 borderline ones; FCDD's default drops them only for CIFAR-10 with Tiny ImageNet as OE."""
    from oneclass.methods import fcdd

    overlap = sorted(data.TINY_IMAGENET_CIFAR10)
    assert len(overlap) == 22 and len(data.TINY_IMAGENET_CIFAR10_BORDERLINE) == 6
    assert not set(overlap) & set(data.TINY_IMAGENET_CIFAR10_BORDERLINE)
    assert {c for c, _ in data.TINY_IMAGENET_CIFAR10.values()} <= set(data.DATASETS["cifar10"].classes)
    wnids = ("n02123045", "n03100240", "n01641577", "n04146614", "n01443537", "n09999999")
    datagen.write_tiny_imagenet_like(tmp_path, wnids=wnids, n_train=2)
    everything = data.load_outliers("tiny_imagenet", 32, 3, root=tmp_path)
    kept = data.load_outliers("tiny_imagenet", 32, 3, exclude=["cifar10_overlap"], root=tmp_path)
    assert kept.meta["excluded"] == ["n01641577", "n02123045", "n03100240"]
    assert len(everything) == 12 and len(kept) == 6
    assert sorted({kept.classes[i] for i in kept.labels.tolist()}) == ["n01443537", "n04146614", "n09999999"]
    wide = data.load_outliers("tiny_imagenet", 32, 3, exclude="cifar10_overlap_wide", root=tmp_path)
    assert wide.meta["excluded"] == ["n01641577", "n02123045", "n03100240", "n04146614"]
    assert fcdd.default_exclude("cifar10", "tiny_imagenet") == ["cifar10_overlap"]
    assert fcdd.default_exclude("fmnist", "tiny_imagenet") == [] and fcdd.default_exclude("cifar10", "noise") == []
    assert len(fcdd.outliers("tiny_imagenet", "cifar10", root=tmp_path)) == 6            # None: the default
    assert len(fcdd.outliers("tiny_imagenet", "cifar10", exclude=[], root=tmp_path)) == 12


def test_outlier_blur_touches_the_oe_images_only(tmp_path):
    """outlier_blur blurs the OE pool (and its held-out images) with the stated Gaussian, computed here with
    scipy; the nominal training images that the pipeline mixes with them are untouched."""
    from scipy.ndimage import gaussian_filter

    from oneclass.methods import fcdd

    datagen.write_tiny_imagenet_like(tmp_path, wnids=("n01443537", "n01629819"), n_train=4)
    rng = np.random.default_rng(0)
    for p in (tmp_path / "tiny-imagenet-200").rglob("*.JPEG"):   # textured images (train and val): a blur shows
        from PIL import Image
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p, format="PNG")
    sharp = fcdd.outliers("tiny_imagenet", "cifar10", exclude=[], root=tmp_path)
    soft = fcdd.outliers("tiny_imagenet", "cifar10", exclude=[], root=tmp_path, blur=1.0, holdout=2)
    full = fcdd.outliers("tiny_imagenet", "cifar10", exclude=[], root=tmp_path, blur=1.0)
    ref = np.stack([[gaussian_filter(ch.astype(np.float64), 1.0, mode="reflect", truncate=3.0) for ch in img]
                    for img in sharp.images.numpy()])
    assert np.abs(full.images.numpy().astype(np.float64) - ref)[..., 3:-3, 3:-3].max() <= 1.0   # uint8 rounding
    assert full.images.float().std() < 0.7 * sharp.images.float().std()
    assert len(soft) + len(soft.heldout) == len(full) and soft.heldout.float().std() < 0.7 * sharp.images.float().std()
    # without held-out pool images the probe draws Tiny ImageNet's val split, blurred as the pool was
    (images, anomaly), _ = fcdd.training_task_probe(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), full, "cifar10",
                                                    n=4, root=tmp_path)
    val = data.load_outliers("tiny_imagenet", 32, 3, root=tmp_path, split="val").images
    key = lambda t: t.numpy().tobytes()
    assert {key(t) for t in images[anomaly == 1]} <= {key(t) for t in fcdd.blur_images(val, 1.0)}
    nominal = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    batch, y, _ = fcdd.pipeline.mix_outliers(nominal, full, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(batch[y == 0], nominal[y == 0]) and 0 < int(y.sum()) < 64
    with pytest.raises(ValueError, match="outlier_blur must be >= 0"):
        fcdd.outliers("tiny_imagenet", "cifar10", root=tmp_path, blur=-1)


# ----------------------------------------------------------------------------------------------- JPEG re-encoding

def _pil_roundtrip(im: np.ndarray, quality: int) -> np.ndarray:
    import io
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, "JPEG", quality=quality, subsampling="4:2:0")
    return np.asarray(Image.open(buf))


def test_jpeg_roundtrip_is_pils_encoder_image_by_image():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    gray = rng.integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    for x in (rgb, gray):
        s = data.ImageSet(torch.from_numpy(x), torch.arange(len(x)), [str(i) for i in range(len(x))], "t",
                          anomaly=torch.tensor([0, 1] + [1] * (len(x) - 2)))
        out = data.jpeg_roundtrip(s, 40)
        assert out.images.shape == s.images.shape and out.images.dtype == torch.uint8
        assert torch.equal(out.labels, s.labels) and torch.equal(out.anomaly, s.anomaly)
        assert out.meta["jpeg_quality"] == 40 and "jpeg_quality" not in s.meta
        for i in range(len(x)):
            want = _pil_roundtrip(x[i].transpose(1, 2, 0).squeeze(-1) if x.shape[1] == 1 else x[i].transpose(1, 2, 0), 40)
            got = out.images[i].permute(1, 2, 0).numpy()
            assert np.array_equal(got.squeeze(-1) if x.shape[1] == 1 else got, want)
    assert data.jpeg_roundtrip(s, None) is s


def test_jpeg_error_grows_as_quality_falls_and_a_second_pass_at_the_same_quality_changes_little():
    # smooth images with edges, like photographs: a ramp plus a bright square
    yy, xx = np.mgrid[0:32, 0:32]
    x = np.stack([np.stack([(xx * 4 + k * 20) % 256, (yy * 6) % 256, (xx + yy) * 3 % 256]) for k in range(4)])
    x[:, :, 10:20, 12:22] = 250
    s = data.ImageSet(torch.from_numpy(x.astype(np.uint8)), torch.zeros(4), ["a"], "t")
    err = {q: (data.jpeg_roundtrip(s, q).images.float() - s.images.float()).abs().mean().item() for q in (90, 50, 10)}
    assert 0 < err[90] < err[50] < err[10]
    once = data.jpeg_roundtrip(s, 75)
    twice = data.jpeg_roundtrip(once, 75)
    first = (once.images.float() - s.images.float()).abs().mean().item()
    second = (twice.images.float() - once.images.float()).abs().mean().item()
    assert second < first / 3


@pytest.mark.parametrize("quality", [0, 101, 75.0, True, "75"])
def test_bad_jpeg_quality_is_refused_before_any_data_is_read(tmp_path, quality):
    # tmp_path holds no dataset: the quality is checked first, so the error is about it and not about missing files
    with pytest.raises(ValueError, match="jpeg_quality must be an integer from 1 to 100"):
        data.one_vs_rest("cifar10", 0, root=tmp_path, jpeg_quality=quality)


def test_one_vs_rest_re_encodes_train_and_test_and_keeps_the_split(tmp_path):
    datagen.write_cifar10_like(tmp_path, n_per_batch=6, n_test=12)
    plain = data.one_vs_rest("cifar10", 0, root=tmp_path)
    jpeg = data.one_vs_rest("cifar10", 0, root=tmp_path, jpeg_quality=30)
    for a, b in ((plain.train, jpeg.train), (plain.test, jpeg.test)):
        assert torch.equal(a.labels, b.labels) and torch.equal(a.anomaly, b.anomaly)
        assert b.meta["jpeg_quality"] == 30 and not torch.equal(a.images, b.images)
        assert torch.equal(b.images, data.jpeg_roundtrip(a, 30).images)


def test_outlier_jpeg_encodes_the_oe_pool_held_out_and_probe_images(tmp_path):
    """outlier_jpeg_quality gives the OE the JPEG compression that the nominal images carry: pool, held-out images
    and the probe's val images are exactly data.jpeg_roundtrip of the plain ones (after any blur)."""
    from oneclass.methods import fcdd

    datagen.write_tiny_imagenet_like(tmp_path, wnids=("n01443537", "n01629819"), n_train=4)
    plain = fcdd.outliers("tiny_imagenet", "cifar10", exclude=[], root=tmp_path)
    coded = fcdd.outliers("tiny_imagenet", "cifar10", exclude=[], root=tmp_path, jpeg=20)
    assert coded.jpeg == 20 and not torch.equal(coded.images, plain.images)
    coded_like = lambda x: data.jpeg_roundtrip(data.ImageSet(x, torch.zeros(len(x)), ["_"], "_"), 20).images
    assert torch.equal(coded.images, coded_like(plain.images))
    both = fcdd.outliers("tiny_imagenet", "cifar10", exclude=[], root=tmp_path, jpeg=20, blur=1.0, holdout=2)
    blurred = fcdd.outliers("tiny_imagenet", "cifar10", exclude=[], root=tmp_path, blur=1.0, holdout=2)
    assert torch.equal(both.images, coded_like(blurred.images)) and torch.equal(both.heldout, coded_like(blurred.heldout))
    (images, anomaly), _ = fcdd.training_task_probe(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), coded, "cifar10",
                                                    n=4, root=tmp_path)
    val = data.load_outliers("tiny_imagenet", 32, 3, root=tmp_path, split="val")
    key = lambda t: t.numpy().tobytes()
    assert {key(t) for t in images[anomaly == 1]} <= {key(t) for t in data.jpeg_roundtrip(val, 20).images}
    with pytest.raises(ValueError, match="outlier_jpeg_quality must be an integer from 1 to 100"):
        fcdd.outliers("tiny_imagenet", "cifar10", root=tmp_path, jpeg=0)


def test_jpeg_random_grid_encodes_each_image_turned_and_rolled_and_undoes_both():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    s = data.ImageSet(torch.from_numpy(x), torch.zeros(6), ["a"], "t")
    out = data.jpeg_roundtrip(s, 40, "random_grid", seed=5)
    draws = np.random.default_rng(5)
    turns, rolls = draws.integers(0, 4, (6, 2)), draws.integers(0, 16, (6, 2))
    assert (rolls > 0).any(axis=1).sum() >= 4       # this seed rolls most images (one not at all)
    for i, ((k, m), (dy, dx)) in enumerate(zip(turns, rolls)):
        im = x[i].transpose(1, 2, 0)
        im = np.roll(np.rot90(im[:, ::-1] if m % 2 else im, k), (dy, dx), (0, 1))
        want = np.rot90(np.roll(_pil_roundtrip(np.ascontiguousarray(im), 40), (-dy, -dx), (0, 1)), -k)
        want = want[:, ::-1] if m % 2 else want
        assert np.array_equal(out.images[i].permute(1, 2, 0).numpy(), want)
    assert out.meta["jpeg_orientation"] == "random_grid"
    # independent of the formula above: on smooth images every undo lands each pixel back in place, so the error
    # is a compression error (of the order of the upright pass's), far below that of an image left rolled by 4 px
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([np.stack([128 + 60 * np.sin((xx + 3 * i) / 5.0 + c) * np.cos((yy - 2 * i) / 7.0)
                                 for c in range(3)]) for i in range(6)]).round().astype(np.uint8)
    s2 = data.ImageSet(torch.from_numpy(smooth), torch.zeros(6), ["a"], "t")
    err = lambda a: np.abs(a.astype(float) - smooth.astype(float)).mean()
    grid, up = err(data.jpeg_roundtrip(s2, 75, "random_grid", seed=5).images.numpy()), \
        err(data.jpeg_roundtrip(s2, 75).images.numpy())
    assert grid < 2 * up + 1 and grid < 0.5 * err(np.roll(smooth, 4, axis=3))


def test_jpeg_random_orientation_encodes_each_image_turned_and_turns_it_back():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (8, 3, 16, 16), dtype=np.uint8)
    s = data.ImageSet(torch.from_numpy(x), torch.zeros(8), ["a"], "t")
    up, rand = data.jpeg_roundtrip(s, 30), data.jpeg_roundtrip(s, 30, "random", seed=3)
    turns = np.random.default_rng(3).integers(0, 4, (8, 2))
    drawn = {(int(k), int(m) % 2) for k, m in turns}
    assert (0, 0) in drawn and len(drawn) > 2      # this seed draws the upright case and turned ones
    for i, (k, m) in enumerate(turns):
        im = x[i].transpose(1, 2, 0)
        im = np.rot90(im[:, ::-1] if m % 2 else im, k)
        want = np.rot90(_pil_roundtrip(np.ascontiguousarray(im), 30), -k)
        want = want[:, ::-1] if m % 2 else want
        assert np.array_equal(rand.images[i].permute(1, 2, 0).numpy(), want)
        if k == 0 and m % 2 == 0:        # drawn upright: encoded exactly as the upright pass encodes it
            assert torch.equal(rand.images[i], up.images[i])
    assert rand.meta["jpeg_orientation"] == "random"
    with pytest.raises(ValueError, match="orientation must be one of 'upright', 'random', 'random_grid'"):
        data.jpeg_roundtrip(s, 30, "sideways")
