"""Where wattlab keeps its data: the DuckDB file, spools, derived model files.

`WATTLAB_HOME` wins; else `$XDG_DATA_HOME/wattlab`; else `~/.local/share/wattlab`.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    home = os.environ.get("WATTLAB_HOME")
    if home:
        path = Path(home).expanduser()
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(xdg).expanduser() / "wattlab"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_path() -> Path:
    return data_dir() / "wattlab.duckdb"


def spool_root() -> Path:
    path = data_dir() / "spool"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Derived model files: transformers checkpoints made from GGUFs, requantized GGUFs.

    `WATTLAB_MODELS` moves them elsewhere (e.g. a shared cache across test sessions).
    """
    override = os.environ.get("WATTLAB_MODELS")
    path = Path(override).expanduser() if override else data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
