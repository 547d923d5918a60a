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


@pytest.mark.parametrize("corruption", ["dotted_line", "zigzag"])
def test_strokes_are_added_so_over_white_only_the_mask_shows_them(corruption):
    x = np.full((5, 28, 28), 255, np.uint8)
    out, gt = mnist_c.corrupt(x, corruption, seed=1)
    assert np.array_equal(out, x) and gt.sum() > 0


def test_spatter_is_mud_that_darkens_strokes_and_greys_the_background_only_where_it_lands():
    # the original's severity-4 spatter: x (1 - m) + 63/255 m with the mud mask m in {0} u [0.8, 1]
    x = np.zeros((200, 28, 28), np.uint8)
    x[:, :, 10:18] = 255                                   # a wide white stroke over black
    out, gt = mnist_c.corrupt(x, "spatter", seed=0)
    mud = gt > 0
    assert 0.02 < mud[:, :, :10].mean() < 0.5             # blobs, neither absent nor everywhere
    assert np.array_equal(out[~mud], x[~mud])               # untouched outside the mud
    stroke, background = mud & (x == 255), mud & (x == 0)
    assert np.all(out[stroke] <= np.rint(255 * (0.2 + 0.8 * 63 / 255)))   # strokes darkened to mud
    assert np.all(out[background] <= 63) and np.all(out[background] >= np.floor(0.8 * 63))
    m = gt[mud]
    assert m.min() >= 0.8 - 1e-3 and m.max() <= 1


def test_dotted_line_spans_the_width_in_two_column_dashes():
    out, gt = mnist_c.corrupt(np.zeros((300, 28, 28), np.uint8), "dotted_line", seed=2)
    drawn = (out > 0).any(axis=1)                            # (images, columns) a dash touches
    dashes = [c for c in range(28) if (c // 2) % 2 == 1 and c < 27]
    assert drawn[:, dashes].all()                            # every image: a dash in columns 2-3, 6-7, ..., 26
    assert not drawn[:, [c for c in range(28) if c not in dashes]].any()
    rows = (out > 0).sum(axis=1)[:, dashes]
    assert 2 <= rows.min() and rows.max() <= 4              # about three rows thick


def test_zigzag_has_amplitude_two_about_its_line():
    for r0, r1 in ((10, 10), (5, 9), (20, 15)):
        cs, rs = mnist_c.zigzag_vertices(r0, r1)
        theta = np.arctan((r1 - r0) / 23)
        # signed distance of each vertex from the straight line through (2, r0) at angle theta
        off = (rs - r0) * np.cos(theta) - (cs - 2) * np.sin(theta)
        assert np.allclose(np.abs(off[1:-1]), 2) and np.all(np.sign(off[1:-1][::2]) == 1)
        along = (cs - 2) * np.cos(theta) + (rs - r0) * np.sin(theta)
        assert np.allclose(np.diff(along[1:-1]), 4) and cs[0] == 2 and np.isclose(along[-1], 23 / np.cos(theta))
    out, _ = mnist_c.corrupt(np.zeros((50, 28, 28), np.uint8), "zigzag", seed=0)
    cols = np.flatnonzero((out > 0).any(axis=(0, 1)))
    assert cols.min() == 2 and cols.max() <= 25


def test_glass_blur_swaps_half_the_pixels_and_blurs_vertically():
    rng = np.random.default_rng(0)
    plan = list(mnist_c.shuffle_plan(400, rng))
    assert len(plan) == 2 * 26 * 26 and plan[0][:2] == (27, 27) and plan[-1][:2] == (2, 2)
    swapped = np.concatenate([p[2] for p in plan])
    assert abs(swapped.mean() - 0.5) < 0.005
    offsets = np.concatenate([p[3] for p in plan])
    assert set(np.unique(offsets)) == {-1, 0}
    dot = np.zeros((1, 28, 28))
    dot[0, 14, 14] = 1.0
    out, _ = mnist_c.glass_blur(dot, rng, iterations=0)     # the blur alone: along the rows (vertical) only
    assert np.count_nonzero(out[0, :, 14]) > 1 and np.count_nonzero(out[0, 14, :]) == 1


def test_motion_blur_kernel_is_imagemagicks():
    w, dc, dr = mnist_c.motion_kernel(0.0)
    assert len(w) == 21 and np.isclose(w.sum(), 1) and np.isclose(w[1] / w[0], np.exp(-1 / 18))
    assert dc.tolist() == list(range(21)) and not dr.any()          # trails to the right at angle 0
    _, dc, dr = mnist_c.motion_kernel(45.0)
    assert dc.tolist() == dr.tolist() == np.ceil(np.arange(21) / np.sqrt(2) - 0.5).astype(int).tolist()


def test_fog_crops_a_256_pixel_plasma_map():
    p = mnist_c.plasma_fractal(20, np.random.default_rng(0))
    assert p.shape == (20, 256, 256) and p.min() == 0 and p.max() == 1
    crop = p[:, :28, :28]
    assert (crop.max(axis=(1, 2)) - crop.min(axis=(1, 2))).mean() < 0.6   # a corner of a larger map
    x = digits(20) / 255.0
    out, _ = mnist_c.fog(x, np.random.default_rng(7))
    top = x.max(axis=(1, 2), keepdims=True)
    expect = np.clip((x + 3 * mnist_c.plasma_fractal(20, np.random.default_rng(7))[:, :28, :28]) * top / (top + 3), 0, 1)
    assert np.allclose(out, expect)


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
    stamp = json.loads((folder / "oneclass.json").read_text())
    assert stamp["version"] == mnist_c.VERSION and stamp["approximation"] is None and "rounded" in stamp["rounding"]
    mtime = (folder / "test_images.npy").stat().st_mtime_ns
    mnist_c.generate("dotted_line", "test", root=tmp_path)          # cached: not rewritten
    assert (folder / "test_images.npy").stat().st_mtime_ns == mtime
    c = mnist_c.load("dotted_line", "test", root=tmp_path)
    assert not c.released and c.images.shape == (12, 1, 28, 28)
    again, gt = mnist_c.corrupt(c.clean, "dotted_line", rng=mnist_c._seed("dotted_line", "test", 0))
    assert np.array_equal(c.images[:, 0].numpy(), again) and np.allclose(c.ground_truth.numpy(), gt, atol=1e-3)


def test_a_cache_from_another_version_is_regenerated_on_load(tmp_path):
    fake_mnist(tmp_path)
    folder = mnist_c.generate("stripe", "test", root=tmp_path)
    stamp = json.loads((folder / "oneclass.json").read_text())
    np.save(folder / "test_images.npy", np.zeros((12, 28, 28, 1), np.uint8))     # what an old version wrote
    (folder / "oneclass.json").write_text(json.dumps(stamp | {"version": mnist_c.VERSION - 1}))
    with pytest.raises(FileNotFoundError, match="another version"):
        mnist_c.load("stripe", "test", root=tmp_path, generate_missing=False)
    c = mnist_c.load("stripe", "test", root=tmp_path)
    assert np.array_equal(c.images[:, 0].numpy(), mnist_c.corrupt(c.clean, "stripe")[0])
    assert json.loads((folder / "oneclass.json").read_text())["version"] == mnist_c.VERSION


def test_regenerating_one_split_does_not_vouch_for_the_other_stale_one(tmp_path):
    fake_mnist(tmp_path)
    folder = mnist_c.generate("stripe", "test", root=tmp_path)
    mnist_c.generate("stripe", "train", root=tmp_path)
    np.save(folder / "test_images.npy", np.zeros((12, 28, 28, 1), np.uint8))       # an old version's test split
    stamp = json.loads((folder / "oneclass.json").read_text())
    (folder / "oneclass.json").write_text(json.dumps(stamp | {"version": mnist_c.VERSION - 1}))
    mnist_c.generate("stripe", "train", root=tmp_path)                              # train first, as a batch may
    assert json.loads((folder / "oneclass.json").read_text())["splits"] == ["train"]
    c = mnist_c.load("stripe", "test", root=tmp_path)                               # so test is regenerated too
    assert np.array_equal(c.images[:, 0].numpy(), mnist_c.corrupt(c.clean, "stripe")[0])


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
