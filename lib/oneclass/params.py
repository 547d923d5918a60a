"""Experiments as data: params files, presets, and their validation against a notebook's parameters cell.

A params file (``params/<paper>/<name>.yaml``, see CONTRIBUTING.md) names a notebook, a dataset, a grid of
classes x seeds (x optional extra axes under ``vary``) and presets smoke / quick / paper. :func:`expand` turns it
into :class:`RunSpec` s after checking every parameter's name and type against the notebook's parameters cell and
every class against the dataset: papermill only warns about unknown parameters, we refuse before anything runs.
"""
from __future__ import annotations

import ast
import itertools
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESETS = ("smoke", "quick", "paper")
TOP_KEYS = {"notebook", "experiment", "dataset", "classes", "seeds", "vary", "params", "presets", "reported",
            "description", "deviations"}
PRESET_KEYS = {"classes", "seeds", "vary", "params", "description", "deviations"}
REQUIRED_PARAMETERS = ("dataset", "normal_class", "seed", "run_dir")
TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict, "None": type(None)}


class ParamsError(ValueError):
    """A params file or a parameter that cannot run; the message lists what is valid."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a batch: a notebook with its resolved parameters and its run folder's coordinates."""

    notebook: Path
    experiment: str          # folder name: the params file's experiment plus its vary values
    preset: str
    dataset: str
    normal_class: Any        # canonical class name (a list for a multi-class nominal set)
    seed: int
    parameters: dict = field(hash=False)
    meta: dict = field(hash=False, default_factory=dict)   # params file, reported mapping: what tables need

    @property
    def label(self) -> str:
        from .runs import class_folder
        return f"{self.experiment}/{self.dataset}/{class_folder(self.normal_class)}/seed_{self.seed}"


# --- the notebook side -------------------------------------------------------------------------------------

def _annotation_types(node: ast.AST | None) -> tuple[type, ...] | None:
    """``int | str | list`` -> (int, str, list); None when there is no annotation."""
    if node is None:
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _annotation_types(node.left) + _annotation_types(node.right)
    if isinstance(node, ast.Constant) and node.value is None:
        return (type(None),)
    name = ast.unparse(node)
    if name not in TYPE_NAMES:
        raise ParamsError(f"unsupported annotation {name!r} in the parameters cell; use {sorted(TYPE_NAMES)}")
    return (TYPE_NAMES[name],)


def notebook_parameters(notebook: str | Path) -> dict[str, dict]:
    """The parameters cell's names -> {'default', 'types'} (types from the annotation, else the default's type;
    a None default without annotation accepts anything)."""
    path = Path(notebook).resolve()
    found = _parse_parameters(path, path.stat().st_mtime_ns)
    return {k: dict(v) for k, v in found.items()}


@lru_cache(maxsize=64)
def _parse_parameters(notebook: Path, mtime_ns: int) -> dict[str, dict]:
    import nbformat

    return notebook_parameters_from(nbformat.read(str(notebook), as_version=4), notebook)


def notebook_parameters_from(nb, notebook: str | Path = "the notebook") -> dict[str, dict]:
    """:func:`notebook_parameters` of a notebook already read (an nbformat node)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParamsError(f"{notebook} must have exactly one code cell tagged 'parameters' (found {len(cells)})")
    found = {}
    for stmt in ast.parse(cells[0].source).body:
        target, value, ann = None, None, None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            target, value, ann = stmt.target.id, stmt.value, stmt.annotation
        if target is None:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError as err:
            raise ParamsError(f"{notebook}: parameter {target!r} needs a literal default") from err
        types = _annotation_types(ann)
        if types is None:
            types = () if default is None else (type(default),)
        found[target] = {"default": default, "types": types}
    missing = [p for p in REQUIRED_PARAMETERS if p not in found]
    if missing:
        raise ParamsError(f"{notebook}: the parameters cell lacks {missing}; every experiment notebook has "
                          f"{list(REQUIRED_PARAMETERS)} (see CONTRIBUTING.md)")
    return found


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if not types:
        return True
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    if isinstance(value, tuple):
        value = list(value)
    return isinstance(value, types)


def check_parameters(notebook: str | Path, values: dict, where: str = "") -> None:
    """Refuse unknown names and wrong types, listing the notebook's parameters."""
    declared = notebook_parameters(notebook)
    declared["normal_class"]["types"] = declared["normal_class"]["types"] and (int, str, list)   # names or sets
    problems = []
    for name, value in values.items():
        if name not in declared:
            problems.append(f"unknown parameter {name!r}")
        elif not _type_ok(value, declared[name]["types"]):
            want = " | ".join(t.__name__ for t in declared[name]["types"])
            problems.append(f"parameter {name!r} = {value!r} is {type(value).__name__}, expected {want}")
    if problems:
        valid = ", ".join(f"{n} ({' | '.join(t.__name__ for t in d['types']) or 'any'}, default {d['default']!r})"
                          for n, d in declared.items())
        raise ParamsError(f"{where}{'; '.join(problems)}.\nValid parameters of {Path(notebook).name}: {valid}")


# --- the params file side -----------------------------------------------------------------------------------

@dataclass
class Experiment:
    path: Path
    raw: dict

    @property
    def root(self) -> Path:
        """The repository root: params files live in <root>/params/<paper>/."""
        for parent in self.path.resolve().parents:
            if parent.name == "params":
                return parent.parent
        return self.path.resolve().parent

    @property
    def notebook(self) -> Path:
        nb = Path(self.raw["notebook"])
        return nb if nb.is_absolute() else (self.root / nb if (self.root / nb).exists() else self.path.parent / nb)

    @property
    def name(self) -> str:
        return self.raw.get("experiment") or self.path.stem

    @property
    def dataset(self) -> str:
        return self.raw["dataset"]

    def preset(self, preset: str) -> dict:
        presets = self.raw.get("presets") or {}
        if preset not in presets:
            raise ParamsError(f"{self.path}: no preset {preset!r}; this file has {sorted(presets)}")
        p = presets[preset] or {}
        bad = set(p) - PRESET_KEYS
        if bad:
            raise ParamsError(f"{self.path}: preset {preset!r} has unknown keys {sorted(bad)}; "
                              f"valid: {sorted(PRESET_KEYS)}")
        return p


def load(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist; the experiments are under params/<paper>/*.yaml")
    raw = yaml.safe_load(path.read_text()) or {}
    bad = set(raw) - TOP_KEYS
    if bad:
        raise ParamsError(f"{path}: unknown keys {sorted(bad)}; valid: {sorted(TOP_KEYS)}")
    for key in ("notebook", "dataset", "presets"):
        if key not in raw:
            raise ParamsError(f"{path}: missing required key {key!r}")
    exp = Experiment(path, raw)
    if not exp.notebook.is_file():
        raise ParamsError(f"{path}: notebook {raw['notebook']} not found (looked for {exp.notebook})")
    return exp


def _resolve_classes(dataset: str, classes: Any) -> list:
    from . import data

    if classes in (None, "all"):
        return list(data.classes(dataset))
    if not isinstance(classes, list):
        classes = [classes]
    names = data.classes(dataset)
    out = []
    for c in classes:
        if isinstance(c, list):   # a multi-class nominal set
            out.append([names[data.resolve_class(dataset, x)] for x in c])
        else:
            out.append(names[data.resolve_class(dataset, c)])
    return out


def expand(exp: Experiment, preset: str, classes: list | None = None, seeds: list[int] | None = None,
           overrides: dict | None = None) -> list[RunSpec]:
    """All runs of one preset (classes and seeds may be narrowed on the command line), validated."""
    p = exp.preset(preset)
    where = f"{exp.path} [{preset}]: "
    common = dict(exp.raw.get("params") or {}) | dict(p.get("params") or {}) | dict(overrides or {})
    for reserved in ("normal_class", "seed", "run_dir"):
        if reserved in common:
            raise ParamsError(f"{where}{reserved!r} is set by the grid, not under params; use classes / seeds")
    if common.setdefault("dataset", exp.dataset) != exp.dataset:
        raise ParamsError(f"{where}params.dataset {common['dataset']!r} differs from the file's dataset "
                          f"{exp.dataset!r}: one params file per dataset")
    try:
        class_list = _resolve_classes(exp.dataset, classes if classes else p.get("classes", exp.raw.get("classes")))
    except (KeyError, ValueError, IndexError) as err:
        raise ParamsError(f"{where}{err}") from err
    seed_list = [int(s) for s in (seeds if seeds else p.get("seeds", exp.raw.get("seeds", [0])))]
    vary = dict(exp.raw.get("vary") or {}) | dict(p.get("vary") or {})
    axes = [[(k, v) for v in (vals if isinstance(vals, list) else [vals])] for k, vals in vary.items()]
    meta = {"params_file": str(exp.path.resolve()), "reported": exp.raw.get("reported"),
            "description": p.get("description") or exp.raw.get("description"),
            "deviations": list(exp.raw.get("deviations") or []) + list(p.get("deviations") or [])}
    # params.yaml records every parameter the notebook ran with: its defaults, then what the file sets
    defaults = {k: d["default"] for k, d in notebook_parameters(exp.notebook).items() if k != "run_dir"}
    specs = []
    for combo in itertools.product(*axes) if axes else [()]:
        name = exp.name + "".join(f".{k}={v}" for k, v in combo)
        for cls in class_list:
            for seed in seed_list:
                values = common | dict(combo) | {"normal_class": cls, "seed": seed}
                check_parameters(exp.notebook, values, where)
                specs.append(RunSpec(exp.notebook, name, preset, exp.dataset, cls, seed, defaults | values, meta))
    if not specs:
        raise ParamsError(f"{where}the grid is empty (no classes or no seeds)")
    return specs
