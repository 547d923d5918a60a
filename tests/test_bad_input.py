"""Bad input is refused before any run starts, in one message that names the parameter, the value, what is
allowed and where the value came from; nothing is written and no kernel starts (issue 20)."""
from pathlib import Path

import pytest

import datagen
from oneclass import batch, data, params
from oneclass.methods import training
from oneclass.methods.base import Scores

REPO = Path(__file__).resolve().parents[1]
FCDD = str(REPO / "params" / "fcdd" / "fmnist.yaml")
GEOM = str(REPO / "params" / "geom" / "fmnist.yaml")


@pytest.fixture
def no_kernels(monkeypatch):
    """Fail the test if the batch tries to start a notebook."""
    started = []
    monkeypatch.setattr(batch, "_execute_notebook", lambda spec, tmp, threads: started.append(spec.label))
    return started


def refuse(capsys, outputs, *args):
    rc = batch.main([*args, "--outputs", str(outputs), "--no-tables"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not outputs.exists(), "nothing may be written"
    return err


@pytest.mark.parametrize("args, expected", [
    (["--preset", "paper", "--set", "method=fcd"],
     "--set method='fcd': 'method' is varied by this preset over ['fcdd', 'hsc', 'ae']"),
    (["--set", "background=blak"],
     "parameter 'background' = 'blak' is not allowed: one of none | black_center | black_border (set by --set)"),
    (["--set", "epochs=-5"], "parameter 'epochs' = -5 is not allowed: >= 1 (set by --set)"),
    (["--set", "lr=0"], "parameter 'lr' = 0 is not allowed: > 0 (set by --set)"),
    (["--set", "eta=1.5"], "parameter 'eta' = 1.5 is not allowed: >= 0 and <= 1 (set by --set)"),
    (["--set", "net=fcdd_32"], "net 'fcdd_32' takes 3x32x32 images, but 'fmnist' is loaded as 1x28x28"),
    (["--set", "net=hsc_28"], "net 'hsc_28' is not a fcdd network"),
    (["--set", "outlier_source=tiny_imagnet"], "outlier_source 'tiny_imagnet' is neither none | noise | blobs"),
    (["--set", "vgg_weights=/nowhere/vgg.pth", "--set", "net=official"], "unknown parameter 'vgg_weights'"),
])
def test_fcdd_bad_values_are_refused_with_their_origin(capsys, outputs, no_kernels, args, expected):
    err = refuse(capsys, outputs, FCDD, *args)
    assert expected in err
    assert "params/fcdd/fmnist.yaml [" in err, "the message names the params file and the preset"
    assert no_kernels == []


def test_values_from_the_params_file_name_the_file_as_their_origin(tmp_path, capsys, outputs, no_kernels):
    bad = tmp_path / "params" / "fcdd" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(Path(FCDD).read_text().replace("outlier_source: tiny_imagenet", "outlier_source: tiny_imagenet\n"
                                                  "  oe_prob: 2.0").replace("notebook: notebooks/",
                                                                            f"notebook: {REPO}/notebooks/"))
    err = refuse(capsys, outputs, str(bad))
    assert "unknown parameter 'oe_prob' (set in bad.yaml's params)" in err


@pytest.mark.parametrize("args, expected", [
    (["--set", "depth=12", "--set", "widen=4"], "depth 12 is not a WRN depth: it must be 6n + 4"),
    (["--set", "depth=16"], "depth and widen go together"),
    (["--set", "transforms=geom9"], "parameter 'transforms' = 'geom9' is not allowed: one of geom72 | geom8"),
    (["--set", "precision=fp16"], "one of fp32 | bf16 | auto"),
    (["--set", "maps=some"], "one of all | gallery | none"),
])
def test_geom_bad_values_are_refused(capsys, outputs, no_kernels, args, expected):
    assert expected in refuse(capsys, outputs, GEOM, *args)


def test_set_on_a_varied_key_narrows_the_axis_to_one_run_per_class_and_seed():
    exp = params.load(FCDD)
    full = params.expand(exp, "paper", classes=[0, 1], seeds=[0, 1])
    assert len(full) == 3 * 2 * 2
    narrowed = params.expand(exp, "paper", classes=[0, 1], seeds=[0, 1], overrides={"method": "hsc"})
    assert len(narrowed) == 4 and {s.parameters["method"] for s in narrowed} == {"hsc"}
    assert {s.experiment for s in narrowed} == {"fcdd_fmnist.method=hsc"}, "same run folders as the full grid"
    assert {s.label for s in narrowed} <= {s.label for s in full}


def test_set_narrows_an_axis_to_the_axis_own_spelling_of_the_value():
    """--set outlier_blur=0 on the axis [0.0, 0.6] runs the full grid's outlier_blur=0.0 folders (a resume finds
    them)."""
    exp = params.load(REPO / "params" / "fcdd" / "cifar10_causes.yaml")
    full = {s.label for s in params.expand(exp, "quick")}
    narrowed = params.expand(exp, "quick", overrides={"outlier_blur": 0})
    assert all(".outlier_blur=0.0." in s.experiment for s in narrowed) and len(narrowed) == 8
    assert {s.label for s in narrowed} <= full
    assert {type(s.parameters["outlier_blur"]) for s in narrowed} == {float}


def test_vary_replaces_or_adds_an_axis():
    exp = params.load(FCDD)
    specs = params.expand(exp, "quick", classes=[0], vary={"lr": [0.1, 0.01]})
    assert sorted(s.parameters["lr"] for s in specs) == [0.01, 0.1]
    assert {s.experiment for s in specs} == {"fcdd_fmnist.lr=0.1", "fcdd_fmnist.lr=0.01"}
    specs = params.expand(exp, "paper", classes=[0], seeds=[0], vary={"method": ["ae"]})
    assert [s.parameters["method"] for s in specs] == ["ae"]
    with pytest.raises(params.ParamsError, match="'lr' = -1 is not allowed"):
        params.expand(exp, "quick", classes=[0], vary={"lr": [0.1, -1]})
    with pytest.raises(params.ParamsError, match="both by --set and by --vary"):
        params.expand(exp, "quick", classes=[0], overrides={"lr": 0.1}, vary={"lr": [0.2]})


def test_a_list_valued_axis_names_its_folders_without_quotes_and_passes_the_lists():
    exp = params.load(FCDD)
    specs = params.expand(exp, "quick", classes=[0], vary={"outlier_exclude": [[], ["n02085620", "cifar10_overlap"]]})
    assert [s.experiment for s in specs] == ["fcdd_fmnist.outlier_exclude=[]",
                                             "fcdd_fmnist.outlier_exclude=[n02085620,cifar10_overlap]"]
    assert [s.parameters["outlier_exclude"] for s in specs] == [[], ["n02085620", "cifar10_overlap"]]
    assert params.axes_of(specs[1].experiment) == {"outlier_exclude": "[n02085620,cifar10_overlap]"}


def test_empty_data_root_without_downloads_stops_before_any_kernel(tmp_path, capsys, outputs, no_kernels,
                                                                   monkeypatch):
    monkeypatch.setenv("ONECLASS_DOWNLOAD", "0")
    empty = tmp_path / "data"
    err = refuse(capsys, outputs, FCDD, "--data", str(empty), "--classes", "0", "1")
    assert "dataset 'fmnist' is not available under the data root" in err
    assert str(empty / "FashionMNIST" / "raw" / "train-images-idx3-ubyte") in err
    assert "(no run was started)" in err
    assert no_kernels == []


def test_missing_oe_corpus_is_found_before_any_kernel(tmp_path, capsys, outputs, no_kernels, monkeypatch):
    monkeypatch.setenv("ONECLASS_DOWNLOAD", "0")
    datagen.write_fmnist_like(tmp_path / "data")
    err = refuse(capsys, outputs, FCDD, "--data", str(tmp_path / "data"), "--classes", "0")
    assert "dataset 'tiny_imagenet' is not available" in err and "wnids.txt" in err


def test_a_dataset_two_runs_need_is_downloaded_once_by_the_batch(tmp_path, monkeypatch, outputs):
    """Two parallel runs (-j 2, separate kernels) on data that a stub downloader writes: one download per
    dataset, in the batch's own process, before the runs start; both runs then find their data and finish."""
    calls = []

    def fake_download(dataset, root):
        calls.append(dataset)
        {"fmnist": datagen.write_fmnist_like, "tiny_imagenet": datagen.write_tiny_imagenet_like}[dataset](root)

    monkeypatch.setattr("oneclass.data.download.torchvision_download", fake_download)
    monkeypatch.setenv("ONECLASS_DOWNLOAD", "1")
    rc = batch.main([FCDD, "--data", str(tmp_path / "data"), "--classes", "0", "1", "-j", "2", "--set", "epochs=1",
                     "--outputs", str(outputs), "--no-tables"])
    assert sorted(calls) == ["fmnist", "tiny_imagenet"], "one download per dataset, in the batch's process"
    assert rc == 0
    assert sorted(p.parent.parent.name for p in outputs.glob("quick/fcdd_fmnist/fmnist/*/seed_0/metrics.json")) == \
        ["t-shirt-top", "trouser"]


def test_datasets_needed_reads_oe_sources_and_class_specific_folders():
    exp = params.load(FCDD)
    specs = params.expand(exp, "quick", classes=[0, 1])
    assert batch.datasets_needed(specs) == [("fmnist", None), ("tiny_imagenet", None)]
    mvtec = params.expand(params.load(REPO / "params" / "fcdd" / "mvtec.yaml"), "quick", classes=["bottle"])
    assert ("mvtec", "bottle") in batch.datasets_needed(mvtec)


def test_require_checks_files_without_reading_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ONECLASS_DOWNLOAD", "0")
    datagen.write_mnist_like(tmp_path)
    data.require("mnist", tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(data.DatasetMissingError, match="t10k-labels-idx1-ubyte"):
        data.require("mnist", tmp_path)
    datagen.write_mvtec_like(tmp_path, "widget")
    data.require("mvtec", tmp_path, normal="widget")
    with pytest.raises(data.DatasetMissingError, match="carpet"):
        data.require("mvtec", tmp_path, normal="carpet")


def test_failed_run_summary_is_the_exception_line_and_error_txt_is_plain():
    class CellError(Exception):    # what papermill raises for a failing cell (its attributes)
        ename, evalue, exec_count = "ValueError", "\x1b[31mbackground 'blak' is unknown\x1b[0m\nmore", 7
        source = "x = build(background)"
        traceback = ["\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
                     "\x1b[0;31mValueError\x1b[0m: background 'blak' is unknown"]

    err = CellError("\n" + "-" * 75)
    assert batch.summary(err) == "ValueError: background 'blak' is unknown"
    text = batch._error_text(err)
    assert "\x1b" not in text
    assert "x = build(background)" in text and "execution count 7" in text
    assert batch.summary(RuntimeError("")) == "RuntimeError"


def test_nan_loss_stops_training_naming_the_epoch():
    assert training.check_loss(0.5, 1, "X") == 0.5
    with pytest.raises(FloatingPointError, match="GEOM: the training loss became nan in epoch 3"):
        training.check_loss(float("nan"), 3, "GEOM")


def test_fcdd_divergence_stops_at_the_first_epoch():
    import torch
    from oneclass.methods import fcdd

    x = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    det = fcdd.make("ae", "fmnist", seed=0, lr=1e30, batch_size=8, device="cpu")
    with pytest.raises(FloatingPointError, match="AE: the training loss became (nan|inf) in epoch 1"):
        det.fit(x, epochs=3, progress=False)
    assert len(det.history_) == 0


def test_non_finite_scores_are_refused_with_count_and_positions():
    with pytest.raises(FloatingPointError, match=r"2 of 5 scores are NaN or infinite \(test images \[1, 3\]"):
        Scores([0.1, float("nan"), 0.3, float("inf"), 0.5])


@pytest.mark.parametrize("body, good, bad", [
    ("fcdd | hsc | ae", ["fcdd", None], ["fcd", 1]),
    (">= 1", [1, 5, None, [1, 2]], [0, -5, [1, 0]]),
    ("> 0", [1e-9], [0]),
    ("0..1", [0, 0.5, 1], [-0.1, 1.1]),
    (">= 0, < 1", [0, 0.99], [1]),
    ("true | false", [True, False], ["yes"]),
])
def test_constraints_accept_and_refuse(body, good, bad):
    c = params.Constraint.parse(body, "p", "nb")
    assert all(c.problem(v) is None for v in good)
    assert all(c.problem(v) for v in bad)


def test_a_default_that_breaks_its_own_constraint_is_a_notebook_error(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    src = 'dataset = "x"\nnormal_class = 0\nseed = 0\nrun_dir = None\nepochs = 0   # [>= 1] epochs\n'
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": ["parameters"]})]
    with pytest.raises(params.ParamsError, match="the default 0 breaks its own constraint"):
        params.notebook_parameters_from(nb, "bad.ipynb")
    nb.cells[0].source = src.replace("[>= 1]", "[>= 1 epochs")
    with pytest.raises(params.ParamsError, match="does not close it"):
        params.notebook_parameters_from(nb, "bad.ipynb")
