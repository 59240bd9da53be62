"""Sequence mixers. Each module defines one mixer (or a mixer and its variant) with the two faces of the DSF
view: ``forward(u)`` (the parallel/chunked computation used for training) and ``eigenvalues(u)`` (the DSF
transition's eigenvalues for the same input), plus ``dsf(u)``/``recurrence(u)`` used to prove they agree; all
of them read the mixer's quantities from ``features(u)``. ``base`` holds the interface, ``blocks`` the shared
building blocks, ``scan`` the scan kernels; no mixer imports from another mixer."""
