"""MNIST-C regenerated: each corruption changes what it should, its ground truth matches, the cache layout."""
import json
import struct

import numpy as np
import pytest

from oneclass import mnist_c


def digits(n=6, seed=0):
    """Digit-like uint8 images: a bright bar and blob on black, like MNIST strokes."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r, c = rng.integers(6, 14, size=2)
        x[i, r:r + 10, c:c + 3] = 255
        x[i, r + 8:r + 12, c:c + 8] = rng.integers(120, 256)
    return x


def write_idx(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(np.ascontiguousarray(arr, np.uint8).tobytes())


def fake_mnist(root, folder="MNIST", n_train=40, n_test=12, seed=0):
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", digits(n, seed + n))
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


def test_stripe_inverts_the_side_columns_and_leaves_columns_7_to_20_untouched():
    x = digits()
    out, gt = mnist_c.corrupt(x, "stripe")
    assert np.array_equal(out[:, :, 7:21], x[:, :, 7:21])
    assert np.array_equal(out[:, :, :7], 255 - x[:, :, :7])
    assert np.array_equal(out[:, :, 21:], 255 - x[:, :, 21:])
    assert np.all(gt[:, :, 7:21] == 0) and np.allclose(gt[:, :, :7], np.abs(255 - 2 * x[:, :, :7].astype(int)) / 255)


def test_brightness_adds_half_and_clips_and_its_ground_truth_is_the_whole_image():
    x = np.array([[0, 64, 127, 128, 200, 255]] * 28, np.uint8)[None, :, :6].repeat(1, 0)
    x = np.pad(x, ((0, 0), (0, 0), (0, 22)))
    out, gt = mnist_c.corrupt(x, "brightness")
    expect = np.rint(np.clip(x / 255 + 0.5, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(out, expect)
    assert out[0, 0, 0] == 128 and out[0, 0, 5] == 255 and out[0, 0, 4] == 255
    assert np.all(gt == 1)


@pytest.mark.parametrize("corruption", ["shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale",
                                        "rotate", "translate", "stripe", "canny_edges"])
def test_ground_truth_is_the_absolute_difference(corruption):
    x = digits()
    out, gt = mnist_c.corrupt(x, corruption, seed=3)
    assert out.dtype == np.uint8 and out.shape == x.shape
    assert np.allclose(gt, np.abs(out.astype(float) - x) / 255, atol=1e-6)
    assert gt.max() > 0   # every corruption changes something


@pytest.mark.parametrize("corruption", ["dotted_line", "zigzag", "spatter"])
def test_drawn_corruptions_have_exact_masks(corruption):
    x = np.zeros((5, 28, 28), np.uint8)   # on black every drawn pixel shows, so the mask is the change
    out, gt = mnist_c.corrupt(x, corruption, seed=1)
    assert np.array_equal(gt > 0, out > 0)
    x = np.full((5, 28, 28), 255, np.uint8)   # on white nothing shows, yet the mask still marks the drawing
    out, gt = mnist_c.corrupt(x, corruption, seed=1)
    assert np.array_equal(out, x) and gt.sum() > 0


def test_fog_is_whole_image_and_spread_over_the_background():
    x = digits()
    out, gt = mnist_c.corrupt(x, "fog")
    assert np.all(gt == 1)
    assert (out[x == 0] > 0).mean() > 0.9


def test_translate_is_an_exact_3_pixel_shift():
    x = digits(8)
    out, _ = mnist_c.corrupt(x, "translate", seed=0)
    for a, b in zip(x, out):
        shifts = [(dy, dx) for dy in (-3, 3) for dx in (-3, 3)
                  if np.array_equal(np.roll(np.pad(a, 3), (dy, dx), (0, 1))[3:-3, 3:-3], b)]
        assert len(shifts) == 1


def test_shot_noise_takes_thirds_and_impulse_noise_hits_about_17_percent():
    x = np.full((200, 28, 28), 128, np.uint8)
    shot, _ = mnist_c.corrupt(x, "shot_noise")
    assert set(np.unique(shot)) <= {0, 85, 170, 255}
    imp, _ = mnist_c.corrupt(x, "impulse_noise")
    assert set(np.unique(imp)) == {0, 128, 255}
    assert abs((imp != 128).mean() - 0.17) < 0.01


def test_canny_edges_are_binary_and_hollow_out_the_digit():
    x = digits()
    out, _ = mnist_c.corrupt(x, "canny_edges")
    assert set(np.unique(out)) <= {0, 255}
    assert (out[x == 255] == 0).mean() > 0.5


def test_seeded_and_deterministic():
    x = digits()
    for c in mnist_c.CORRUPTIONS:
        a, ga = mnist_c.corrupt(x, c, seed=5)
        b, gb = mnist_c.corrupt(x, c, seed=5)
        assert np.array_equal(a, b) and np.array_equal(ga, gb), c
    assert not np.array_equal(mnist_c.corrupt(x, "zigzag", seed=1)[0], mnist_c.corrupt(x, "zigzag", seed=2)[0])


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="valid: shot_noise"):
        mnist_c.corrupt(digits(), "blurry")
    with pytest.raises(ValueError, match="uint8"):
        mnist_c.corrupt(digits().astype(np.float32), "stripe")
    with pytest.raises(ValueError, match="28x28"):
        mnist_c.corrupt(np.zeros((2, 32, 32), np.uint8), "stripe")


def test_generate_writes_the_released_layout_and_load_reads_it(tmp_path):
    fake_mnist(tmp_path)
    folder = mnist_c.generate("dotted_line", "test", root=tmp_path)
    x = np.load(folder / "test_images.npy")
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.uint8
    assert np.load(folder / "test_labels.npy").tolist() == [i % 10 for i in range(12)]
    assert json.loads((folder / "oneclass.json").read_text())["approximation"]
    mtime = (folder / "test_images.npy").stat().st_mtime_ns
    mnist_c.generate("dotted_line", "test", root=tmp_path)          # cached: not rewritten
    assert (folder / "test_images.npy").stat().st_mtime_ns == mtime
    c = mnist_c.load("dotted_line", "test", root=tmp_path)
    assert not c.released and c.images.shape == (12, 1, 28, 28)
    again, gt = mnist_c.corrupt(c.clean, "dotted_line", rng=mnist_c._seed("dotted_line", "test", 0))
    assert np.array_equal(c.images[:, 0].numpy(), again) and np.allclose(c.ground_truth.numpy(), gt, atol=1e-3)


def test_a_released_copy_is_read_as_it_is(tmp_path):
    fake_mnist(tmp_path)
    clean = digits(12, 12)
    shifted = np.roll(clean, 2, axis=2)
    for name, arr in (("identity", clean), ("translate", shifted)):
        d = tmp_path / "mnist_c" / name
        d.mkdir(parents=True)
        np.save(d / "test_images.npy", arr[..., None])
        np.save(d / "test_labels.npy", np.arange(12, dtype=np.uint8) % 10)
    c = mnist_c.load("translate", "test", root=tmp_path)
    assert c.released
    assert np.array_equal(c.images[:, 0].numpy(), shifted)
    assert np.allclose(c.ground_truth.numpy(), np.abs(shifted.astype(float) - clean) / 255, atol=1e-6)
    mnist_c.generate("translate", "test", root=tmp_path, force=False)   # never overwrites a released copy
    assert np.array_equal(np.load(tmp_path / "mnist_c" / "translate" / "test_images.npy")[..., 0], shifted)
