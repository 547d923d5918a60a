"""oneclass: executable papers for explainable one-class anomaly detection on images.

Modules: ``data`` (datasets from standard layouts), ``runs`` (run folders), ``batch`` (papermill batches),
``params`` (experiment files), ``metrics``, ``tables``, ``gallery`` (heatmap normalisation and figures),
``widgets`` (the heatmap explorer), ``reported`` (the papers' numbers), and one module per method.
"""
__version__ = "0.1.0"
