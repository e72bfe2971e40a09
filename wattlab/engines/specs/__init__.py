"""One light module per engine, each holding `SPEC = EngineSpec(...)` (see engines/spec.py).

They import nothing but wattlab.engines.spec. The registry (engines/__init__.py, ENGINE_MODULES)
lists them, one line per engine.
"""
