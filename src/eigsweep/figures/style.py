"""How every figure looks: one colour, marker and hatch per model (the same in every sweep), model families,
intervals named as what they are, chance levels, "n/a: <reason>" panels, the missing-runs footnote.

Colours: each model family (from the registry metadata) has its own hue; its members differ in hue shift and
lightness, and in marker (points) and hatch (bars), so all registered models are told apart even in grey.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker
import matplotlib.transforms as mtransforms  # noqa: E402
import numpy as np  # noqa: E402
from seaborn.external import husl  # noqa: E402

from eigsweep import registry, stats  # noqa: E402
from eigsweep.figures import selection  # noqa: E402

# model families, in the order figures show them, with their hue (HUSL degrees)
FAMILIES = {"attention (q/k/v)": 245, "selective recurrence": 55, "delta rule": 5, "LTI, real λ": 135,
            "LTI, complex λ": 295, "other": None}
HUE_STEP = 9   # degrees between the members of a family (their lightness differs too)
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
HATCHES = ("", "///", "...", "xxx", "\\\\\\", "ooo", "---")
STAGE_NAMES = {"init": "at initialisation", "trained": "trained"}
NA_COLOR = "0.45"


def model_family(arch: str) -> str:
    """The model's family, from its registry metadata: structural eigenvalues (delta rule), LTI with real or
    complex λ, else attention-like (reads q/k/v settings: heads and the short convolution) or a selective
    recurrence."""
    info = registry.MIXERS.get(arch)
    if info is None:
        return "other"
    if getattr(info, "family", None):
        return info.family
    if info.structural:
        return "delta rule"
    if info.lti:
        return "LTI, complex λ" if info.complex else "LTI, real λ"
    return "attention (q/k/v)" if "short_conv" in info.model_keys else "selective recurrence"


def _members() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {f: [] for f in FAMILIES}
    for arch in registry.MIXERS:
        out.setdefault(model_family(arch), []).append(arch)
    return out


LIGHTNESS = (42, 62, 30, 54, 70, 36, 48)


def model_style(arch: str) -> dict:
    """{"color", "marker", "hatch", "family"} of a model; unregistered names are grey with a marker by hash."""
    fam = model_family(arch)
    members = _members().get(fam, [])
    if arch not in members or FAMILIES.get(fam) is None:
        k = sum(map(ord, arch)) % len(MARKERS)
        return dict(color=(0.45, 0.45, 0.45), marker=MARKERS[k], hatch=HATCHES[k], family=fam)
    k, m = members.index(arch), len(members)
    hue = (FAMILIES[fam] + (k - (m - 1) / 2) * HUE_STEP) % 360
    color = tuple(float(np.clip(c, 0, 1)) for c in husl.husl_to_rgb(hue, 85, LIGHTNESS[k % len(LIGHTNESS)]))
    return dict(color=color, marker=MARKERS[k % len(MARKERS)], hatch=HATCHES[k % len(HATCHES)], family=fam)


def color_of(arch: str) -> tuple:
    return model_style(arch)["color"]


def order_models(archs) -> list[str]:
    """Models grouped by family (FAMILIES order), registry order inside a family."""
    reg = {a: i for i, a in enumerate(registry.MIXERS)}
    fams = list(FAMILIES)
    return sorted(dict.fromkeys(np.asarray(archs).tolist()),
                  key=lambda a: (fams.index(model_family(a)) if model_family(a) in fams else len(fams), reg.get(a, 99), a))


def lighten(color, amount=0.55):
    return tuple(1 - (1 - c) * (1 - amount) for c in color[:3])


# -- text ----------------------------------------------------------------------------------------

def interval_name(kind: str) -> str:
    return stats.INTERVAL_NAMES[kind]


def seeds_text(seeds) -> str:
    s = sorted(set(int(v) for v in np.asarray(seeds).tolist()))
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"seeds {s[0]}–{s[-1]}"
    return ("seed " if len(s) == 1 else "seeds ") + ",".join(map(str, s))


def n_text(ds) -> str:
    """'n = 4 runs (2 per model), seeds 0,1' for the runs a panel shows."""
    n = ds.sizes["run"]
    per = {a: int((ds.arch.values == a).sum()) for a in selection.unique(ds.arch.values)}
    if len(per) > 1:
        k = set(per.values())
        each = f" ({k.pop()} per model)" if len(k) == 1 else ""
    else:
        each = ""
    return f"n = {n} run{'s' if n != 1 else ''}{each}, {seeds_text(ds.seed.values)}"


# -- panels --------------------------------------------------------------------------------------

def na_panel(ax, reason: str, title: str | None = None) -> None:
    """A panel with nothing to show: says so, and why. Its ticks are hidden, not removed: removing them would
    remove them from every panel sharing its axis (a figure's row with sharey)."""
    ax.tick_params(axis="both", which="both", left=False, bottom=False, labelleft=False, labelbottom=False)
    ax.grid(False)
    for s in ax.spines.values():
        s.set_color("0.85")
    ax.text(0.5, 0.5, "\n".join(textwrap.wrap(f"n/a: {reason}", 40)), transform=ax.transAxes, ha="center",
            va="center", fontsize=8, color=NA_COLOR)
    if title is not None:
        ax.set_title(title, fontsize=9)


def corner_text(ax, text: str, loc="upper left", fontsize=7, color="0.25", width: int = 44) -> None:
    """A note in a corner of a panel, on a white box, long lines wrapped."""
    if not text:
        return
    text = "\n".join(w for line in text.split("\n") for w in textwrap.wrap(line, width))
    x, ha = (0.01, "left") if "left" in loc else (0.99, "right")
    y, va = (0.99, "top") if "upper" in loc else (0.01, "bottom")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=fontsize, color=color,
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8), zorder=10)


def log_axis(axis, numticks: int = 6) -> None:
    """A log axis labelled at powers of ten only (10⁰, 10², …): labels never run into each other."""
    axis.set_major_locator(mticker.LogLocator(base=10, numticks=numticks))
    axis.set_major_formatter(mticker.LogFormatterSciNotation(base=10))
    axis.set_minor_locator(mticker.LogLocator(base=10, subs=np.arange(2, 10) * 0.1, numticks=100))
    axis.set_minor_formatter(mticker.NullFormatter())


def missing_note(fig, missing: list[str], below_lines: int = 0) -> None:
    """Name the missing runs under the figure (figures built from existing results only), below
    ``below_lines`` lines of footnote (an offset in points, so the two never overlap whatever the figure size)."""
    if not missing:
        return
    shown = ", ".join(missing[:6]) + (f", … (+{len(missing) - 6} more)" if len(missing) > 6 else "")
    text = f"Missing runs (no result file, not shown): {shown}"
    where = mtransforms.offset_copy(fig.transFigure, fig=fig, y=-FOOTNOTE_LINE_PT * below_lines, units="points")
    fig.text(0.01, 0.0, "\n".join(textwrap.wrap(text, 150)), fontsize=7, color="firebrick", ha="left", va="top",
             transform=where)


FOOTNOTE_LINE_PT = 9.5   # height of one line of 7-point footnote text


def footnote(fig, text: str) -> int:
    """Write ``text`` under the figure; returns how many lines it took."""
    if not text:
        return 0
    lines = textwrap.wrap(text, 160)
    fig.text(0.01, 0.0, "\n".join(lines), fontsize=7, color="0.3", ha="left", va="top")
    return len(lines)


def save(fig, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), dpi=150, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)


def message_figure(message: str):
    """A figure that only says why there is nothing to draw."""
    fig, ax = plt.subplots(figsize=(6, 1.6))
    na_panel(ax, message)
    return fig
