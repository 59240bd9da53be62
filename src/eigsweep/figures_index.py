"""Names of the figure families a sweep produces (pure Python: the Snakefile imports this)."""
FIGURES = ("spectrum_bars", "accuracy")
