"""NVIDIA Jetson boards through jtop (jetson-stats): the only module that imports it.

jtop talks to its root service over a socket (/run/jtop.sock); wattlab.meters.jetson reads power
rails through it when the service answers, else straight from sysfs (no vendor library).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

JTOP_SOCKET = Path("/run/jtop.sock")


def jtop_installed() -> bool:
    """Whether jetson-stats is installed (without importing it)."""
    return importlib.util.find_spec("jtop") is not None


def jtop_service_up(socket: Path = JTOP_SOCKET) -> bool:
    """Whether jtop is installed and its service socket exists."""
    return jtop_installed() and socket.exists()


def jtop_class() -> Any:
    """The `jtop` client class (imports jtop); ImportError when jetson-stats is missing."""
    from jtop import jtop

    return jtop
