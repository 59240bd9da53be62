"""eigsweep: train sequence models, read them as dynamical systems, relate their spectra to performance.

Python API (torch is imported lazily, so `import eigsweep.config` stays light for the Snakefile)::

    import eigsweep
    model = eigsweep.build_model("mamba2", vocab_size=256, d_model=64, n_layers=2)
    lam = eigsweep.eigenvalues(model, x)        # xarray.DataArray (layer, sample, head, time, ...)
    stats = eigsweep.measure(model, x)          # bin fractions, phase bins, fine histogram
"""
__version__ = "0.1.0"

_LAZY = {
    "build_model": ("eigsweep.model", "build_model"),
    "eigenvalues": ("eigsweep.spectrum", "eigenvalues"),
    "measure": ("eigsweep.spectrum", "measure"),
    "train_run": ("eigsweep.train", "train_run"),
    "load_config": ("eigsweep.config", "load_config"),
    "sweep_runs": ("eigsweep.config", "sweep_runs"),
    "MIXERS": ("eigsweep.registry", "MIXERS"),
    "TASKS": ("eigsweep.registry", "TASKS"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'eigsweep' has no attribute {name!r}")
