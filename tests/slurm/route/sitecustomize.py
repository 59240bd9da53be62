"""Test-only routing until the branches merge: the Snakemake train jobs call eigsweep.launch.run_job, whose
Slurm branch is launch.run_slurm (main's waiter). On import of eigsweep.launch, point that name at
eigsweep.slurm.run_slurm (the waiter under test). Once launch.py is gone (jobs.py imports run_slurm from
eigsweep.slurm), eigsweep.launch is never imported and this does nothing. On PYTHONPATH only in tests/slurm."""
import importlib.abc
import importlib.util
import sys


class _RouteLaunch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "eigsweep.launch":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_route(module):
            exec_module(module)
            from eigsweep.slurm import run_slurm
            module.run_slurm = run_slurm
        spec.loader.exec_module = exec_and_route
        return spec


sys.meta_path.insert(0, _RouteLaunch())
