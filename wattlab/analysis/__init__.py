"""Reading what was measured: queries over the DuckDB store, the read-only SQL box, Pareto fronts,
the Green AI index, scaling fits, and the report with its plots.

Nothing here runs inference or writes measurements; `sessions/` runs and stores. The pure formulas
(pareto, green_index, scaling) import nothing from `sessions/`, so the runner may use them too.
"""
