"""Strip outputs from notebooks before they go into git, and give them the python3 kernelspec papermill needs.

    python -m oneclass.nbclean notebooks/*.ipynb          # rewrite in place
    python -m oneclass.nbclean --check notebooks/*.ipynb  # exit 1 if any notebook has outputs
"""
from __future__ import annotations

import argparse
import sys

import nbformat

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def is_clean(nb) -> bool:
    return all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code") and "papermill" not in nb.metadata


def clean(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "papermill"):
            cell.metadata.pop(key, None)
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oneclass.nbclean", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    dirty = []
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            if not is_clean(nb):
                dirty.append(path)
        else:
            nbformat.write(clean(nb), path)
    for path in dirty:
        print(f"{path} has outputs: run python -m oneclass.nbclean {path}")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
