"""Small constructed summaries (the layout of summary.nc) whose statistics are known, for the figure, selection
and statistics tests."""
import json

import numpy as np
import xarray as xr

BINS = ["[0,0.1]", "(0.1,0.5]", "(0.5,0.9]", "(0.9,1]", "(1,10]", "(10,100]", ">100"]
PHASE_BINS = ["[0,1]", "(1,10]", "(10,45]", "(45,90]", "(90,180]"]
# one representative |λ| per magnitude bin (the fine histogram puts each bin's mass there)
BIN_MAGS = [0.05, 0.3, 0.7, 0.99, 2.0, 20.0, 200.0]


def spec(arch, mod="none", seed=0, lr=1e-3, task="t", options=None, **model):
    base = dict(conv_kernel=4, d_model=16, d_state=4, expand=2, head_dim=8, n_heads=1, n_layers=2, norm="rmsnorm",
                options=options or {}, output_gate=False, pooling="mean", pos_embedding="learned", short_conv="none")
    base.update(model)
    return json.dumps(dict(arch=arch, lr=lr, model=base, modification=mod, seed=seed, sweep="s", task=task,
                           task_params={"name": "parity", "seq_len": 8}, train={"steps": 10}))


def run(arch, mod="none", seed=0, lr=1e-3, task="t", acc=0.5, best=None, status="ok", near0=0.1, init_near0=0.5,
        negative=0.0, options=None, informative=None, **model):
    """One run: trained share ``near0`` in [0, 0.1], the rest in (0.9, 1]; a share ``negative`` of λ < 0."""
    return dict(arch=arch, mod=mod, seed=seed, lr=lr, task=task, acc=acc, best=acc if best is None else best,
                status=status, near0=near0, init_near0=init_near0, negative=negative, informative=informative,
                spec=spec(arch, mod, seed, lr, task, options, **model))


def summary(runs: list[dict], lti: bool = False, heads: int = 1) -> xr.Dataset:
    from eigsweep.spectrum import FINE_EDGES

    n, layers = len(runs), [0, 1]
    lower = np.concatenate([[0.0], FINE_EDGES[:-1]])
    frac = np.zeros((n, 2, 2, heads, 7))
    phase = np.zeros((n, 2, 2, heads, 5))
    fine = np.zeros((n, 2, 2, heads, len(FINE_EDGES)))
    inf_frac = np.full_like(frac, np.nan)
    for i, r in enumerate(runs):
        for s, share in enumerate((r["init_near0"], r["near0"])):
            frac[i, s, ..., 0], frac[i, s, ..., 3] = share, 1 - share
            for b, mag in ((0, BIN_MAGS[0]), (3, BIN_MAGS[3])):
                fine[i, s, ..., np.searchsorted(FINE_EDGES, mag)] = 1000 * frac[i, s, 0, 0, b]
        phase[i, 1, ..., 4], phase[i, 1, ..., 0] = r["negative"], 1 - r["negative"]
        phase[i, 0, ..., 0] = 1
        if r["informative"] is not None:
            inf_frac[i, :, ..., 0], inf_frac[i, :, ..., 3] = r["informative"], 1 - r["informative"]
    steps = np.array([0, 5, 10])
    during = np.repeat(frac[:, :1], 3, axis=1)
    during[:, -1] = frac[:, 1]
    ids = [f"{r['arch']}-{r['task']}-{r['mod']}-s{r['seed']}-lr{r['lr']:.2e}" for r in runs]
    data = dict(
        bin_fraction=(("run", "stage", "layer", "head", "bin"), frac),
        bin_fraction_std=(("run", "stage", "layer", "head", "bin"), 0.1 * frac),
        phase_fraction=(("run", "stage", "layer", "head", "phase_bin"), phase),
        phase_fraction_std=(("run", "stage", "layer", "head", "phase_bin"), 0 * phase),
        fine_count=(("run", "stage", "layer", "head", "fine_bin"), fine),
        bin_fraction_during=(("run", "spectrum_step", "layer", "head", "bin"), during),
        test_acc=(("run", "eval_step"), np.array([[r["acc"] / 2, r["best"], r["acc"]] for r in runs])),
        final_acc=("run", [r["acc"] for r in runs]), best_acc=("run", [r["best"] for r in runs]),
        status=("run", [r["status"] for r in runs]), spec_json=("run", [r["spec"] for r in runs]))
    if any(r["informative"] is not None for r in runs):
        data.update(informative_bin_fraction=(("run", "stage", "layer", "head", "bin"), inf_frac),
                    informative_bin_fraction_std=(("run", "stage", "layer", "head", "bin"), 0 * inf_frac))
    if lti:   # LTI models: eigenvalues on a circle of radius 0.9 (init) and 1.1 (trained: unstable), 8 per layer
        from eigsweep import registry

        ang = np.linspace(0.1, 3.0, 8)
        lam = np.stack([0.9 * np.exp(1j * ang), 1.1 * np.exp(1j * ang)])            # stage, mode
        lam = np.broadcast_to(lam[None, :, None, :], (n, 2, 2, 8)).copy()
        lam[[not registry.MIXERS[r["arch"]].lti for r in runs]] = np.nan
        data.update(lti_eigenvalue_real=(("run", "stage", "layer", "lti_mode"), lam.real),
                    lti_eigenvalue_imag=(("run", "stage", "layer", "lti_mode"), lam.imag))
    return xr.Dataset(data, coords=dict(
        run=ids, run_id=("run", ids), stage=["init", "trained"], layer=layers, head=np.arange(heads), bin=BINS,
        phase_bin=PHASE_BINS, fine_bin=np.arange(len(FINE_EDGES)), fine_lower=("fine_bin", lower),
        fine_upper=("fine_bin", FINE_EDGES), spectrum_step=steps, eval_step=np.array([1, 5, 10]),
        task=("run", [r["task"] for r in runs]), arch=("run", [r["arch"] for r in runs]),
        modification=("run", [r["mod"] for r in runs]), seed=("run", [r["seed"] for r in runs]),
        lr=("run", [r["lr"] for r in runs])))
