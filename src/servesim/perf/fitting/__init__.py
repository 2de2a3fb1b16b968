"""Offline fitting of the operator models to measured kernel tables (needs pyarrow, scipy).

``tables`` reads the aiconfigurator-layout Parquet tables in place; ``heldout`` holds the
error statistics, the shape-wise hold-out split and the log-grid correction fit every family
shares; one module per operator family fits its parameters. Nothing at run time imports this.
"""
