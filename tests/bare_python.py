"""Run a script as a bare GPU machine would: with the Jupyter stack, zennit, tqdm, yaml, matplotlib and seaborn
unimportable (that machine has only torch, torchvision, numpy, pandas, scipy and scikit-learn).

    python tests/bare_python.py benchmarks/precision.py --smoke
"""
import importlib.abc
import importlib.machinery
import os
import runpy
import sys

BLOCKED = {"nbformat", "nbclient", "papermill", "ipykernel", "IPython", "jupyter_client", "ipywidgets", "zennit",
           "tqdm", "yaml", "matplotlib", "seaborn"}


class _Refuse(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"{spec.name} is not on a bare GPU machine (blocked by tests/bare_python.py)",
                                  name=spec.name)

    def exec_module(self, module):   # pragma: no cover - create_module raises first
        pass


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, _Refuse())
        return None


if __name__ == "__main__":
    for name in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
        del sys.modules[name]
    sys.meta_path.insert(0, _Blocker())
    script, sys.argv = sys.argv[1], sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
