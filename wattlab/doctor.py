"""`wattlab doctor`: every meter and engine this box could use, available or not, why, and the fix."""

from __future__ import annotations

from typing import Any


def diagnose() -> dict[str, Any]:
    from wattlab.engines import engine_status
    from wattlab.meters import probe_all
    from wattlab.meters.carbon import resolve_intensity
    from wattlab.paths import data_dir, default_db_path

    meters = []
    for probe in probe_all():
        meters.append(
            {
                "name": probe.meter,
                "available": probe.available,
                "detail": probe.reason if not probe.available else "; ".join(probe.details) or probe.reason,
                "fix": probe.fix,
            }
        )
    engines = []
    for status in engine_status():
        engines.append(
            {
                "name": status.name,
                "available": status.installed,
                "detail": status.version or status.reason or "",
                "fix": status.fix,
            }
        )
    try:
        carbon = resolve_intensity().as_dict()
    except Exception as exc:  # doctor reports, never crashes
        carbon = {"error": str(exc)}
    from wattlab.devices.nvidia import can_change_caps

    caps = can_change_caps()  # reads only: whether power limits / clock locks can be set here, and why
    return {
        "meters": meters,
        "engines": engines,
        "gpu_caps": {"allowed": caps.allowed, "detail": caps.reason, "fix": caps.fix},
        "data_dir": str(data_dir()),
        "database": str(default_db_path()),
        "carbon": carbon,
    }
