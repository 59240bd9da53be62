"""Figures built from a sweep's summary.nc and statistics tables alone (no training).

``catalog`` says which figures a sweep has (pure Python, imported by the Snakefile), ``selection`` which runs
and eigenvalues a figure shows, ``style`` how every figure looks (colours, intervals, n/a panels); one module
per figure family draws it. ``make_family`` draws one family (workflow/scripts/figures.py calls it).
"""
from __future__ import annotations


def make_family(family: str, summary, outdir, expected: list[str] | None = None, options: dict | None = None,
                tables=None):
    """Draw every figure of one family from ``summary`` into ``outdir`` (results/<sweep>/figures); runs in
    ``expected`` without a result in the summary are named on each figure as missing. The correlation family
    reads ``tables`` (correlations.nc, written by the statistics rule; computed here when not given)."""
    from eigsweep.figures.draw import make_family as draw

    return draw(family, summary, outdir, expected, options, tables)
