"""Sequence mixers. Each module defines one mixer with the two faces of the DSF view:
``forward(u)`` (the parallel/chunked computation used for training) and ``eigenvalues(u)`` (the DSF
transition's eigenvalues for the same input), plus ``dsf(u)``/``recurrence(u)`` used to prove they agree."""
