"""Experiments as data: params files, presets, and their validation against a notebook's parameters cell.

A params file (``params/<paper>/<name>.yaml``, see CONTRIBUTING.md) names a notebook, a dataset, a grid of
classes x seeds (x optional extra axes under ``vary``) and presets smoke / quick / paper. :func:`expand` turns it
into :class:`RunSpec` s after checking every parameter against the notebook's parameters cell and every class
against the dataset: papermill only warns about unknown parameters, we refuse before anything runs.

What the parameters cell declares, and :func:`check_parameters` enforces:

- the **type**: the annotation (``epochs: int | None = None``), else the default's type;
- **allowed values or a range**, as a bracket at the start of the parameter's comment::

      method = "fcdd"        # [fcdd | hsc | ae] the method of Table 3
      lr: float | None = None  # [> 0] None: the paper's
      oe_prob = 0.5          # [0..1] probability of swapping a sample for an outlier
      lambda1 = 0.5          # [>= 0, < 1]

  Alternatives are YAML scalars separated by ``|`` (``null`` is None); a range is ``>=``/``>``/``<=``/``<``
  bounds separated by commas, or ``a..b`` (both ends included). None passes a range when the type allows None;
  a list's elements are checked one by one.
- **checks that need the library** (a network that does not take the dataset's image size, an unknown outlier
  source), named on a comment line of the cell: ``# checked by: oneclass.methods.fcdd.check_parameters``. That
  function takes every resolved parameter and returns a list of problems (strings; empty when all is well).
"""
from __future__ import annotations

import ast
import importlib
import io
import itertools
import operator
import re
import tokenize
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESETS = ("smoke", "quick", "paper")
TOP_KEYS = {"notebook", "experiment", "dataset", "classes", "seeds", "vary", "params", "presets", "reported",
            "description", "deviations", "data"}
PRESET_KEYS = {"classes", "seeds", "vary", "params", "description", "deviations"}
REQUIRED_PARAMETERS = ("dataset", "seed", "run_dir")
# The run's class (what the batch's `classes` grid fills): ``normal_class`` for one-vs-rest experiments,
# ``anomaly_class`` in a notebook without ``normal_class``, where each run's class is the anomaly (the Clever Hans
# paper's MNIST-C corruptions). A notebook with both (GEOM's intuition: a normal and an anomalous digit) is run
# per normal class.
CLASS_PARAMETERS = ("normal_class", "anomaly_class")
TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict, "None": type(None)}


class ParamsError(ValueError):
    """A params file or a parameter that cannot run; the message lists what is valid."""


_BOUND = re.compile(r"^(>=|>|<=|<)\s*(\S+)$")
_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
CHECKED_BY = re.compile(r"^#\s*checked by:\s*([\w.]+)\s*$", re.M)


@dataclass(frozen=True)
class Constraint:
    """Allowed values or bounds of a parameter, from the bracket that starts its comment."""

    text: str
    allowed: tuple = ()
    bounds: tuple = ()     # (operator symbol, number)

    @classmethod
    def parse(cls, body: str, name: str, notebook) -> "Constraint":
        bounds = []
        for item in (b.strip() for b in body.split(",")):
            bound = _BOUND.match(item)
            if ".." in item and "|" not in item:
                lo, _, hi = item.partition("..")
                bounds += [(">=", _number(lo, name, notebook)), ("<=", _number(hi, name, notebook))]
            elif bound:
                bounds.append((bound.group(1), _number(bound.group(2), name, notebook)))
            else:
                bounds = None
                break
        if bounds:
            return cls(body, bounds=tuple(bounds))
        allowed = tuple(yaml.safe_load(v.strip()) for v in body.split("|") if v.strip())
        if not allowed:
            raise ParamsError(f"{notebook}: parameter {name!r} has an empty constraint []")
        return cls(body, allowed=allowed)

    def problem(self, value) -> str | None:
        """Why ``value`` breaks the constraint, or None."""
        if isinstance(value, (list, tuple)):
            return next((p for p in map(self.problem, value) if p), None)
        if value is None:
            return None
        if self.allowed:
            # True == 1 in Python: a bool matches only a bool that is allowed
            if any(a is value if isinstance(value, bool) else a == value for a in self.allowed):
                return None
            return "one of " + " | ".join(str(a) for a in self.allowed)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if all(_OPS[op](value, bound) for op, bound in self.bounds):
            return None
        return " and ".join(f"{op} {bound:g}" for op, bound in self.bounds)


def _number(text: str, name: str, notebook) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParamsError(f"{notebook}: parameter {name!r}: {text!r} in its constraint is not a number") from None


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on that line (tokenize, so a '#' inside a string is not a comment)."""
    out = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string[1:].strip()
    except (tokenize.TokenError, IndentationError):
        pass
    return out


@dataclass(frozen=True)
class RunSpec:
    """One run of a batch: a notebook with its resolved parameters and its run folder's coordinates."""

    notebook: Path
    experiment: str          # folder name: the params file's experiment plus its vary values
    preset: str
    dataset: str
    normal_class: Any        # the run's class, canonical name (a list for a multi-class nominal set); the
                             # notebook gets it as its class parameter (normal_class, or anomaly_class)
    seed: int
    parameters: dict = field(hash=False)
    meta: dict = field(hash=False, default_factory=dict)   # params file, reported mapping: what tables need

    @property
    def label(self) -> str:
        from .runs import class_folder, dataset_folder
        return f"{self.experiment}/{dataset_folder(self.dataset)}/{class_folder(self.normal_class)}/seed_{self.seed}"


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
    """The parameters cell's names -> {'default', 'types', 'constraint'} (types from the annotation, else the
    default's type; a None default without annotation accepts anything; constraint: a :class:`Constraint` or
    None)."""
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
    comments = _comments(cells[0].source)
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
        comment = comments.get(stmt.end_lineno, "")
        constraint = None
        if comment.startswith("["):
            body, closed, _ = comment[1:].partition("]")
            if not closed:
                raise ParamsError(f"{notebook}: parameter {target!r}: its comment opens a constraint '[' but "
                                  "does not close it")
            constraint = Constraint.parse(body, target, notebook)
            bad = constraint.problem(default)
            if bad:
                raise ParamsError(f"{notebook}: parameter {target!r}: the default {default!r} breaks its own "
                                  f"constraint ({bad})")
        found[target] = {"default": default, "types": types, "constraint": constraint}
    missing = [p for p in REQUIRED_PARAMETERS if p not in found]
    if not any(p in found for p in CLASS_PARAMETERS):
        missing.append(" or ".join(CLASS_PARAMETERS))
    if missing:
        raise ParamsError(f"{notebook}: the parameters cell lacks {missing}; every experiment notebook has "
                          f"{list(REQUIRED_PARAMETERS)} and one class parameter of {list(CLASS_PARAMETERS)} "
                          "(see CONTRIBUTING.md)")
    return found


def class_parameter(notebook: str | Path, declared: dict | None = None) -> str:
    """The notebook parameter that holds the run's class: 'normal_class', else 'anomaly_class' (``declared``: the
    notebook's parameters when the caller has them)."""
    declared = notebook_parameters(notebook) if declared is None else declared
    return next(p for p in CLASS_PARAMETERS if p in declared)


def checker(notebook: str | Path):
    """The function named on the parameters cell's ``# checked by: module.function`` line, or None."""
    path = Path(notebook).resolve()
    target = _checker_name(path, path.stat().st_mtime_ns)
    if target is None:
        return None
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ParamsError(f"{notebook}: '# checked by: {target}' names no function ({err})") from err


@lru_cache(maxsize=64)
def _checker_name(notebook: Path, mtime_ns: int) -> str | None:
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", []))
    found = CHECKED_BY.search(cell.source)
    return found.group(1) if found else None


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


def check_parameters(notebook: str | Path, values: dict, where: str = "", sources: dict | None = None) -> None:
    """Refuse unknown names, wrong types, values outside a parameter's constraint and what the notebook's
    checker finds, naming the parameter, the value, what is allowed and (``sources``: name -> where the value
    was set) where it came from."""
    declared = notebook_parameters(notebook)
    cls = class_parameter(notebook, declared)
    declared[cls]["types"] = declared[cls]["types"] and (int, str, list)   # names or sets
    sources = sources or {}
    problems, unknown = [], False

    def origin(name):
        return f" (set {sources[name]})" if name in sources else ""

    for name, value in values.items():
        if name not in declared:
            problems.append(f"unknown parameter {name!r}{origin(name)}")
            unknown = True
        elif not _type_ok(value, declared[name]["types"]):
            want = " | ".join(t.__name__ for t in declared[name]["types"])
            problems.append(f"parameter {name!r} = {value!r} is {type(value).__name__}, expected {want}"
                            f"{origin(name)}")
        elif declared[name]["constraint"] is not None and declared[name]["constraint"].problem(value):
            problems.append(f"parameter {name!r} = {value!r} is not allowed: "
                            f"{declared[name]['constraint'].problem(value)}{origin(name)}")
    if unknown:
        valid = ", ".join(f"{n} ({' | '.join(t.__name__ for t in d['types']) or 'any'}, default {d['default']!r})"
                          for n, d in declared.items())
        raise ParamsError(f"{where}{'; '.join(problems)}.\nValid parameters of {Path(notebook).name}: {valid}")
    if problems:
        raise ParamsError(f"{where}{'; '.join(problems)}")
    check = checker(notebook)
    if check is not None:
        resolved = {n: d["default"] for n, d in declared.items()} | values
        found = list(check(resolved))
        if found:
            raise ParamsError(f"{where}{'; '.join(found)}")


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
        return list(data.nominal_classes(dataset))      # a tree of one's own may have test-only classes
    if not isinstance(classes, list):
        classes = [classes]
    names = data.classes(dataset)
    out = []
    for c in classes:
        if not data.is_path_category(dataset) and data.canonical(dataset) == "mvtec" and data.is_path_category(c):   # a category folder of one's own
            out.append(str(data.category_folder(c, None)))
            continue
        if isinstance(c, list):   # a multi-class nominal set
            out.append([names[data.resolve_class(dataset, x)] for x in c])
        else:
            out.append(names[data.resolve_class(dataset, c)])
    return out


def axis_label(value) -> str:
    """A vary value as it appears in an experiment folder's name: lists as [a,b] (no quotes, no spaces), the rest
    as str()."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(axis_label(v) for v in value) + "]"
    return str(value)


_AXIS = re.compile(r"\.(?=[A-Za-z_]\w*=)")


def axes_of(experiment: str) -> dict[str, str]:
    """The vary axes an experiment folder's name holds, as :func:`expand` wrote them with :func:`axis_label`
    ('fcdd_cifar10_causes.outlier_exclude=[].outlier_blur=0.6' -> {'outlier_exclude': '[]', 'outlier_blur': '0.6'});
    values may hold dots, axis names may not."""
    suffix = experiment.split(".", 1)[1] if "." in experiment else ""
    return dict(part.split("=", 1) for part in _AXIS.split(suffix) if part)


def expand(exp: Experiment, preset: str, classes: list | None = None, seeds: list[int] | None = None,
           overrides: dict | None = None, vary: dict | None = None) -> list[RunSpec]:
    """All runs of one preset, validated. ``classes`` / ``seeds`` narrow the grid; ``overrides`` (``--set``) set
    parameters, and an override of a key the file varies narrows that axis to the value (which must be on it);
    ``vary`` (``--vary``) replaces an axis's values or adds an axis."""
    from . import data

    p = exp.preset(preset)
    where = f"{exp.path} [{preset}]: "
    overrides, vary_cli = dict(overrides or {}), dict(vary or {})
    file_vary = dict(exp.raw.get("vary") or {}) | dict(p.get("vary") or {})
    axes_values = {k: (v if isinstance(v, list) else [v]) for k, v in file_vary.items()}
    for key, values in vary_cli.items():
        if key in overrides:
            raise ParamsError(f"{where}{key!r} is given both by --set and by --vary; use one")
        axes_values[key] = list(values)
    for key in [k for k in overrides if k in axes_values]:
        value = overrides.pop(key)
        if value not in axes_values[key]:
            raise ParamsError(f"{where}--set {key}={value!r}: {key!r} is varied by this preset over "
                              f"{axes_values[key]}; --set narrows that axis to one of its values (or use "
                              f"--vary {key}=V1,V2 to run other values)")
        # the axis's own spelling (0.0 for --set x=0), so that the run folders are the full grid's
        axes_values[key] = [next(v for v in axes_values[key] if v == value)]
    sources = {k: f"in {exp.path.name}'s params" for k in exp.raw.get("params") or {}}
    sources |= {k: f"in preset {preset!r}" for k in p.get("params") or {}}
    sources |= {k: "by --set" for k in overrides} | {k: "on the vary axis" for k in file_vary}
    sources |= {k: "by --vary" for k in vary_cli}
    common = dict(exp.raw.get("params") or {}) | dict(p.get("params") or {}) | overrides
    for reserved in CLASS_PARAMETERS + ("seed", "run_dir"):
        if reserved in common or reserved in axes_values:
            raise ParamsError(f"{where}{reserved!r} is set by the grid, not as a parameter; use classes / seeds")
    dataset = exp.dataset
    if "dataset" in overrides and data.is_path_category(dataset):   # a tree of one's own: --set dataset=PATH
        if not data.is_path_category(overrides["dataset"]):
            raise ParamsError(f"{where}--set dataset={overrides['dataset']!r}: this file runs a class-folder tree of "
                              "your own; give its path (absolute, or starting with ~ ./ ../)")
        dataset = overrides["dataset"]
    if common.setdefault("dataset", dataset) != dataset:
        raise ParamsError(f"{where}params.dataset {common['dataset']!r} differs from the file's dataset "
                          f"{dataset!r}: one params file per dataset")
    try:
        class_list = _resolve_classes(dataset, classes if classes else p.get("classes", exp.raw.get("classes")))
    except (KeyError, ValueError, IndexError, FileNotFoundError) as err:
        raise ParamsError(f"{where}{err}") from err
    seed_list = [int(s) for s in (seeds if seeds else p.get("seeds", exp.raw.get("seeds", [0])))]
    axes = [[(k, v) for v in vals] for k, vals in axes_values.items()]
    meta = {"params_file": str(exp.path.resolve()), "reported": exp.raw.get("reported"), "data": exp.raw.get("data"),
            "description": p.get("description") or exp.raw.get("description"),
            "deviations": list(exp.raw.get("deviations") or []) + list(p.get("deviations") or [])}
    # params.yaml records every parameter the notebook ran with: its defaults, then what the file sets
    defaults = {k: d["default"] for k, d in notebook_parameters(exp.notebook).items() if k != "run_dir"}
    specs, class_key = [], class_parameter(exp.notebook)
    for combo in itertools.product(*axes) if axes else [()]:
        name = exp.name + "".join(f".{k}={axis_label(v)}" for k, v in combo)
        for cls in class_list:
            for seed in seed_list:
                values = common | dict(combo) | {class_key: cls, "seed": seed}
                check_parameters(exp.notebook, values, where, sources)
                specs.append(RunSpec(exp.notebook, name, preset, dataset, cls, seed, defaults | values, meta))
    if not specs:
        raise ParamsError(f"{where}the grid is empty (no classes or no seeds)")
    return specs
