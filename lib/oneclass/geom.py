"""Deprecated import path, kept for one release: the code lives in `oneclass.methods.geom`."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("oneclass.methods.geom")
