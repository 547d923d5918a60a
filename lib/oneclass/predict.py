"""Score new images with a finished run's saved model.

``python -m oneclass.predict RUN_DIR IMAGES_OR_FOLDER --out DIR`` loads ``RUN_DIR/model.pt``, decodes the images
exactly as the run decoded its test set (the size, channels and crop its ``runtime.json`` recorded under
``inputs``), scores them in the detector's own evaluation batches, and writes ``DIR/scores.csv`` (one row per
image: path, score) and, for detectors with heatmaps, ``DIR/<number>_<stem>_heatmap.png`` (the image beside its heatmap
overlay, normalised with the run's ``eta`` as in appendix A). From Python: :func:`predict` returns the scores as a
DataFrame (and the maps). A folder is searched recursively for image files.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import gallery
from .data import ImageSet, decode_images, list_images
from .data.folders import is_image_file
from .methods.base import Detector


def input_spec(run_dir: str | Path) -> dict:
    """How the run decoded its test images: {'size', 'channels', 'crop'} from its runtime.json."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.pt").exists():
        raise FileNotFoundError(f"{run_dir} has no model.pt: only runs that saved their detector can predict "
                                "(run.save_model(det, inputs=test) in the notebook)")
    runtime = run_dir / "runtime.json"
    spec = json.loads(runtime.read_text()).get("inputs") if runtime.exists() else None
    if not spec:
        raise ValueError(f"{run_dir} did not record how it decoded its test images (runtime.json has no 'inputs'; "
                         "runs saved with run.save_model(det, inputs=test) do): rerun it with the current notebook")
    return spec


def image_paths(source) -> list[Path]:
    """One image file, a folder (searched recursively), or a list of files."""
    if isinstance(source, (list, tuple)):
        paths = [Path(p) for p in source]
    else:
        source = Path(source)
        if source.is_dir():
            paths = list_images(source)
        elif source.is_file():
            paths = [source]
        else:
            raise FileNotFoundError(f"{source} does not exist: pass an image file or a folder of images")
    bad = [p for p in paths if not is_image_file(p)]
    if bad or not paths:
        raise ValueError(f"no image files to score in {source}" if not paths else
                         f"{len(bad)} path(s) are not image files, e.g. {bad[0]}")
    return paths


def predict(run_dir, images, out=None, batch_size: int | None = None, progress: bool = True,
            scope: str = "local") -> tuple[pd.DataFrame, np.ndarray | None]:
    """Scores (and maps) of ``images`` under the run's saved model; with ``out``, write scores.csv and overlays."""
    run_dir = Path(run_dir)
    spec = input_spec(run_dir)
    det = Detector.load(run_dir / "model.pt")
    paths = image_paths(images)
    eta = _run_eta(run_dir)
    step = batch_size or getattr(det, "eval_batch_size", 64)      # the run's own evaluation batches
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
    # numbered: test/good/000.png and test/crack/000.png must not overwrite each other
    names = [f"{i:05d}_{p.stem}_heatmap.png" for i, p in enumerate(paths)]
    scores, maps, kept = [], [], []
    starts = range(0, len(paths), step)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="predict", unit="batch")
    for i in starts:      # each image is decoded once
        x, _ = decode_images(paths[i:i + step], spec["size"], spec["channels"], spec.get("crop", False))
        out_i = det.score(ImageSet(x, torch.zeros(len(x), dtype=torch.int64), ["image"], "predict"))
        scores.append(np.asarray(out_i.scores, dtype=np.float64))
        if out_i.maps is None:
            continue
        maps.append(np.asarray(out_i.maps, dtype=np.float32))
        if out is None:
            continue
        if scope == "local":        # per-image contrast: this batch's overlays can be written now
            _overlays(x, gallery.normalize(det.display_maps(maps[-1]), eta, scope), scores[-1], out, names[i:])
        else:                       # one contrast over all images: needs every map first, so keep the images
            kept.append(x)
    table = pd.DataFrame({"path": [str(p) for p in paths], "score": np.concatenate(scores)})
    all_maps = np.concatenate(maps) if maps else None
    if out is not None:
        if all_maps is not None:
            table["overlay"] = names
            if kept:
                shown = gallery.normalize(det.display_maps(all_maps), eta, scope)
                _overlays(torch.cat(kept), shown, table["score"].to_numpy(), out, names)
        table.to_csv(out / "scores.csv", index=False)
    return table, all_maps


def _run_eta(run_dir: Path) -> float:
    """The run's heatmap contrast quantile (its ``eta`` parameter; appendix A's 0.97 when it has none)."""
    if not (run_dir / "params.yaml").exists():
        return 0.97
    import yaml

    params = yaml.safe_load((run_dir / "params.yaml").read_text()) or {}
    return float((params.get("parameters") or {}).get("eta") or 0.97)


def _overlays(images: torch.Tensor, shown: np.ndarray, scores: np.ndarray, out: Path, names: list[str]) -> None:
    for j, img in enumerate(images.numpy()):
        _overlay(img, shown[j], scores[j], out / names[j])


def _overlay(image: np.ndarray, heat: np.ndarray, score: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(4.2, 2.3))
    img = gallery._as_hwc(image)
    for ax in axes:
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_xticks([])
        ax.set_yticks([])
    if heat.shape != img.shape[:2]:
        heat = np.asarray(torch.nn.functional.interpolate(torch.as_tensor(heat)[None, None], size=img.shape[:2],
                                                          mode="bilinear", align_corners=False)[0, 0])
    axes[1].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[0].set_title(path.stem.removesuffix("_heatmap").split("_", 1)[1], fontsize=7)
    axes[1].set_title(f"score {score:.4g}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oneclass.predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a finished run folder with model.pt")
    ap.add_argument("images", help="an image file or a folder of images")
    ap.add_argument("--out", required=True, help="folder for scores.csv and the heatmap overlays")
    ap.add_argument("--scope", default="local", choices=gallery.SCOPES[:2],
                    help="heatmap normalisation: per image (local) or over all images scored (figure)")
    args = ap.parse_args(argv)
    try:
        table, _ = predict(args.run_dir, args.images, args.out, scope=args.scope)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}")
        return 2
    print(f"{len(table)} images scored -> {Path(args.out) / 'scores.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
