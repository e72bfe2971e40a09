"""Report sections for model families (students against their teacher, scaling over sizes) and for
model transforms (quality per joule against the untransformed model).

Families (`wattlab.engines.families`): the catalog's ladders (Llama 3, Qwen2.5, SmolLM2 as
`random:<arch>` shapes, plus the bundled SmolLM2-135M-Instruct) and the user's own pairs given with
`wattlab report --family TEACHER,STUDENT,...`. A student is compared with its teacher only on the
same work and the same levers: every setting the report keeps per configuration (engine, variant,
batch, device, decoding, options, lengths or task, mode, rate, transform, ...) equal except the
model. Ratios are student / teacher of the configurations' means (repeats averaged). Quality is
compared only when both models have trained weights: a random-weight shape scores noise.

Scaling: over the members of one family run with the same levers, J/token and p50 latency are
fitted against parameter count as a power law (`analysis/scaling.py`, least squares in log-log
space, with R² and n), when at least three sizes were measured. Parameter counts come from the
run's `params` column, else from the catalog shape's published count.

Transforms: each configuration with a `transform` is set against the configuration that differs
only in having none (same model, engine, variant, workload, batch, ...). Quality per joule is the
quality divided by J/token (perplexity, where lower is better, enters as 1/perplexity); its change
against the untransformed baseline ranks the transforms. Without quality, the section says so and
gives the energy change alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from wattlab.analysis.report import Config, fmt_num
from wattlab.engines.families import Family, member_name, member_of, model_params, real_weights

Block = tuple[str, Any]


def _key_without(config: Config, *names: str) -> str:
    """The configuration's settings without `names`: what must match for a like-for-like pair."""
    kept = {k: v for k, v in config.settings.items() if k not in names}
    return json.dumps(kept, sort_keys=True, default=str)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def _x(value: float | None) -> str:
    return "—" if value is None else f"{fmt_num(value, 3)}x"


def _params(config: Config) -> float | None:
    value = config.runs[0].get("params")
    if value:
        return float(value)
    return model_params(str(config.settings.get("model")))


def _levers(config: Config, family: Family) -> str:
    """The shared settings of a student/teacher pair, in words (the model left out)."""
    s = config.settings
    from wattlab.analysis import bins as binning

    parts = [config.levers, binning.workload_label(s), str(s.get("mode"))]
    if s.get("mode") == "online" and s.get("rate") is not None:
        parts[-1] += f" @{fmt_num(s['rate'])}/s"
    for name in ("transform", "speculative"):
        if s.get(name):
            parts.append(f"{name} {s[name]}")
    return " · ".join(parts)


def _is_perplexity(config: Config) -> bool:
    metric = next((r.get("quality_metric") for r in config.runs if r.get("quality_metric")), None)
    return config.settings.get("task") == "perplexity" or metric == "perplexity"


def family_blocks(configs: list[Config], local: Sequence[Family] = ()) -> list[Block]:
    """The "Model families" section: per family present with two or more members, each student
    against its teacher on the same work, then the scaling fits over the family's sizes."""
    grouped: dict[str, tuple[Family, dict[int, list[Config]]]] = {}
    for c in configs:
        found = member_of(str(c.settings.get("model")), local)
        if found is not None:
            family, rank = found
            grouped.setdefault(family.name, (family, {}))[1].setdefault(rank, []).append(c)
    present = [(f, by_rank) for f, by_rank in grouped.values() if len(by_rank) >= 2]
    unmatched_local = [f.name for f in local if f.name not in grouped]
    if not present and not unmatched_local:
        return []
    out: list[Block] = [("h2", "Model families: students against their teacher")]
    out.append(
        (
            "p",
            "A family is a ladder of model sizes sharing one vocabulary, the largest taken as the teacher "
            "(the catalog's Llama 3, Qwen2.5 and SmolLM2 ladders; --family adds your own). A student is "
            "compared with its teacher only where every other setting is equal (engine, variant, batch, "
            "device, decoding, options, workload, mode, rate, transform). Ratios are student / teacher "
            "of the means over repeats; J/token keeps each run's energy method. Quality is compared only "
            "when both have trained weights (random-weight shapes score noise).",
        )
    )
    for name in unmatched_local:
        out.append(("p", f"Family {name}: no finished run of this session uses two of its models."))
    for family, by_rank in present:
        out += _family_section(family, by_rank)
    return out


def _family_section(family: Family, by_rank: dict[int, list[Config]]) -> list[Block]:
    teacher_name = member_name(family, 0)
    vocab = f", {family.vocab_size:,} tokens" if family.vocab_size else ""
    out: list[Block] = [
        ("h3", f"Family {family.name}: teacher {teacher_name} (vocabulary: {family.tokenizer}{vocab})")
    ]
    cols = [
        "student",
        "same work and levers",
        "runs (student / teacher)",
        "J/token student vs teacher (method)",
        "J/token ratio",
        "p50 latency ratio",
        "quality delta",
    ]
    rows: list[list[str]] = []
    teachers = {_key_without(c, "model"): c for c in by_rank.get(0, [])}
    unmatched: list[str] = []
    for rank in sorted(r for r in by_rank if r > 0):
        for student in by_rank[rank]:
            teacher = teachers.get(_key_without(student, "model"))
            if teacher is None:
                unmatched.append(f"{student.label} (run {student.run_ids})")
                continue
            rows.append(_pair_row(student, teacher, family))
    if rows:
        out.append(("table", (cols, rows)))
    elif 0 not in by_rank:
        out.append(("p", f"The teacher {teacher_name} was not run in this session: no student comparison."))
    if unmatched:
        out.append(
            (
                "ul",
                [f"No teacher run with the same settings for {u}." for u in unmatched],
            )
        )
    out += _scaling(family, by_rank)
    return out


def _pair_row(student: Config, teacher: Config, family: Family) -> list[str]:
    j_s, j_t = student.mean("j_per_token"), teacher.mean("j_per_token")
    methods = "/".join(sorted({student.method, teacher.method}))
    energy = f"{fmt_num(j_s)} vs {fmt_num(j_t)} ({methods})" if j_s is not None and j_t is not None else "—"
    return [
        str(student.settings.get("model")),
        _levers(student, family),
        f"{student.run_ids} / {teacher.run_ids}",
        energy,
        _x(_ratio(j_s, j_t)),
        _x(_ratio(student.mean("e2e_p50_s"), teacher.mean("e2e_p50_s"))),
        _quality_delta(student, teacher),
    ]


def _quality_delta(student: Config, teacher: Config) -> str:
    q_s, q_t = student.mean("quality"), teacher.mean("quality")
    if q_s is None or q_t is None:
        return "no quality measured"
    models = [str(c.settings.get("model")) for c in (student, teacher)]
    if not all(real_weights(m) for m in models):
        return "random weights: not meaningful"
    direction = " (perplexity: lower is better)" if _is_perplexity(student) else ""
    return f"{q_s - q_t:+.3f} ({fmt_num(q_s, 3)} vs {fmt_num(q_t, 3)}){direction}"


def _scaling(family: Family, by_rank: dict[int, list[Config]]) -> list[Block]:
    """Power-law fits of J/token and p50 latency over the family's sizes, per set of equal levers."""
    from wattlab.analysis.scaling import fit_power_law

    groups: dict[str, list[Config]] = {}
    for configs in by_rank.values():
        for c in configs:
            groups.setdefault(_key_without(c, "model"), []).append(c)
    lines: list[str] = []
    for members in groups.values():
        sized = [(p, c) for c in members if (p := _params(c))]
        if len({p for p, _ in sized}) < 3:
            continue
        where = _levers(members[0], family)
        for column, name in (("j_per_token", "J/token"), ("e2e_p50_s", "p50 latency (s)")):
            points = [(p, v) for p, c in sized if (v := c.mean(column)) is not None and v > 0]
            if len({p for p, _ in points}) < 3:
                lines.append(f"{name} over {where}: fewer than three sizes with this figure, no fit.")
                continue
            # x in billions of parameters, so the coefficient reads as "at 1B" instead of 0.000000002
            fit = fit_power_law([p / 1e9 for p, _ in points], [v for _, v in points])
            lines.append(
                f"{name} = {fmt_num(fit.a)} x (params/1B)^{fit.b:.3f} (R² {fit.r2:.3f}, n = {fit.n}; "
                f"least squares on logs) over {where}."
            )
    if not lines:
        lines = [
            "Fewer than three sizes of this family ran with the same settings: no scaling fit "
            "(a power law through two points says nothing about its form)."
        ]
    return [("p", f"Scaling over the {family.name} sizes:"), ("ul", lines)]


# --- transforms ---------------------------------------------------------------------------------
def _energy_column(config: Config) -> str:
    """J per output token, or J per request where a run generates no tokens (perplexity scoring)."""
    return "j_per_token" if config.mean("j_per_token") is not None else "j_per_request"


def _quality_per_joule(config: Config) -> float | None:
    q, j = config.mean("quality"), config.mean(_energy_column(config))
    if q is None or j is None or j <= 0:
        return None
    if _is_perplexity(config):
        return (1.0 / q) / j if q > 0 else None
    return q / j


def transform_blocks(configs: list[Config]) -> list[Block]:
    """The "Transforms" section: each transformed configuration against its untransformed twin,
    ranked by the change in quality per joule, with the best one named."""
    transformed = [c for c in configs if c.settings.get("transform")]
    if not transformed:
        return []
    plain = {_key_without(c, "transform"): c for c in configs if not c.settings.get("transform")}
    out: list[Block] = [("h2", "Transforms: quality per joule against the untransformed model")]
    out.append(
        (
            "p",
            "Each transformed configuration is set against the one that differs only in having no "
            "transform (same model, engine, variant, batch, workload, ...). Quality per joule = quality "
            "/ J per output token, or / J per request for scoring tasks that generate none (perplexity "
            "enters as 1/perplexity, lower being better); ranked by its change against that baseline. "
            "Random-weight models are marked: their quality is noise.",
        )
    )
    cols = [
        "rank",
        "transform",
        "model and levers",
        "runs (transformed / baseline)",
        "J/token or J/request (vs baseline)",
        "quality (vs baseline)",
        "quality per joule change",
    ]
    ranked: list[tuple[float, Config, Config]] = []
    unranked: list[tuple[Config, Config | None]] = []
    for c in transformed:
        base = plain.get(_key_without(c, "transform"))
        qpj, qpj_base = _quality_per_joule(c), _quality_per_joule(base) if base else None
        if base is not None and qpj is not None and qpj_base:
            ranked.append((qpj / qpj_base - 1.0, c, base))
        else:
            unranked.append((c, base))
    ranked.sort(key=lambda item: -item[0])
    rows = [_transform_row(str(i), c, base, change) for i, (change, c, base) in enumerate(ranked, 1)]
    rows += [_transform_row("—", c, base, None) for c, base in unranked]
    out.append(("table", (cols, rows)))
    out.append(("ul", _transform_verdict(ranked, unranked)))
    return out


def _transform_row(rank: str, c: Config, base: Config | None, change: float | None) -> list[str]:
    model = str(c.settings.get("model"))
    tag = "" if real_weights(model) else " (random weights)"
    column = _energy_column(c)
    j, q = c.mean(column), c.mean("quality")
    if base is None:
        return [rank, str(c.settings["transform"]), c.label + tag, c.run_ids, fmt_num(j), fmt_num(q, 3),
                "no untransformed run with the same settings"]  # fmt: skip
    jb, qb = base.mean(column), base.mean("quality")
    unit = "J/token" if column == "j_per_token" else "J/request"
    energy = f"{fmt_num(j)} {unit} ({_pct(j, jb)} vs {fmt_num(jb)}, {c.method})"
    quality = "no quality measured" if q is None or qb is None else f"{fmt_num(q, 3)} (vs {fmt_num(qb, 3)})"
    if change is not None:
        qpj = f"{change * 100:+,.1f}%"
    else:
        qpj = "no quality measured" if q is None or qb is None else "no energy measured"
    return [rank, str(c.settings["transform"]), c.label + tag, f"{c.run_ids} / {base.run_ids}", energy,
            quality, qpj]  # fmt: skip


def _pct(value: float | None, base: float | None) -> str:
    if value is None or base in (None, 0) or not math.isfinite(value):
        return "n/a"
    assert base is not None
    return f"{(value / base - 1.0) * 100:+,.1f}%"


def _transform_verdict(
    ranked: list[tuple[float, Config, Config]], unranked: list[tuple[Config, Config | None]]
) -> list[str]:
    lines: list[str] = []
    if ranked:
        change, best, base = ranked[0]
        random = (
            "" if real_weights(str(best.settings.get("model"))) else " (random weights: quality is noise)"
        )
        lines.append(
            f"Best quality per joule: transform {best.settings['transform']} on {best.label}, "
            f"{change * 100:+,.1f}% quality per joule against the untransformed run {base.run_ids}"
            f"{random}."
        )
    else:
        lines.append(
            "No quality measured for a transformed run and its untransformed baseline (run with a task): "
            "no transform can be ranked by quality per joule."
        )
    with_energy = [(c, b) for c, b in unranked if b is not None]
    if with_energy and not ranked:
        c, b = min(with_energy, key=lambda cb: _ratio(cb[0].mean("j_per_token"), cb[1].mean("j_per_token"))
                   or math.inf)  # fmt: skip
        change_text = _pct(c.mean("j_per_token"), b.mean("j_per_token"))
        lines.append(
            f"By energy alone: transform {c.settings['transform']} on {c.label} changes J/token by "
            f"{change_text} against its untransformed run."
        )
    missing = [c for c, b in unranked if b is None]
    if missing:
        lines.append(
            f"{len(missing)} transformed configuration(s) have no untransformed run with the same settings: "
            "add one (transform unset) to compare."
        )
    return lines
