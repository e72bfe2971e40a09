"""Launch's model and GPU levers: Transform and Speculative menus that follow the engine, model and
device; free text with comma lists (grid axes, `none` for the run without); GPU caps only for a GPU
run; all of it round-trips through the sweep draft and its TOML (Ctrl-S / Ctrl-O)."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import make_app, pilot_test, settle, widget_text
from textual.widgets import Input, Select

from wattlab.app.screens import launch_form as form
from wattlab.errors import ConfigError


def _values(choices: list[tuple[str, str]]) -> list[str]:
    return [value for _, value in choices]


# --- the form's rules, without a terminal ---------------------------------------------------------
def test_transform_menu_follows_the_engine_and_the_device() -> None:
    cpu = _values(form.transform_choices("llamacpp", gpu=False))
    assert cpu[0] == "" and {"prune:magnitude:0.5", "prune:layers:2", "prune:mlp:0.25"} <= set(cpu)
    assert {"lora:16", "lora:16:merged"} <= set(cpu) and "prune:2:4" not in cpu
    assert "prune:2:4" in _values(form.transform_choices("transformers", gpu=True))
    assert "lora:16:x4" in _values(form.transform_choices("vllm", gpu=True))  # multi-LoRA: vLLM only
    assert _values(form.transform_choices("openai", gpu=True)) == [""]  # a served model is fixed
    # random weights are made at load: nothing stored to prune or merge, adapters only
    assert _values(form.transform_choices("transformers", True, "random:llama-3.2-1b")) == ["", "lora:16"]


def test_speculative_menu_offers_what_the_engine_runs() -> None:
    llama = _values(form.speculative_choices("llamacpp", "smollm2-135m-instruct", "auto"))
    assert llama[0] == "" and "ngram:4" in llama
    assert not any(v.startswith("draft:") for v in llama)  # llama.cpp's spec has no draft model
    teacher = _values(form.speculative_choices("transformers", "random:llama-3.1-8b", "cpu"))
    # the draft model is the smallest of the target's family: same vocabulary
    assert "draft:random:llama-3.2-1b:4" in teacher
    smallest = _values(form.speculative_choices("transformers", "random:llama-3.2-1b", "cpu"))
    assert not any(v.startswith("draft:") for v in smallest)
    assert _values(form.speculative_choices("openai", "smollm2-135m-instruct", "auto")) == [""]


def test_levers_parse_into_fixed_values_and_grid_axes() -> None:
    fixed, axes = form.parse_levers(
        {
            "transform": "lora:16",
            "transform_text": "none, prune:layers:2",
            "speculative": "ngram:4",
            "power_limit_w": "200,250.5",
            "sm_clock_mhz": "1410",
        }
    )
    assert axes == {"transform": [None, "prune:layers:2"], "power_limit_w": [200.0, 250.5]}
    assert fixed == {"speculative": "ngram:4", "sm_clock_mhz": 1410}
    assert form.parse_levers({"transform": "", "speculative": ""}) == ({}, {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"transform_text": "prune:layers:0"}, "drop at least 1 layer"),
        ({"speculative_text": "ngram:99"}, "draft tokens must be between 1 and 32"),
        ({"transform_text": "lora:16,,prune:2:4"}, "has an empty item"),
        ({"sm_clock_mhz": "1.4GHz"}, "is not a whole number of MHz"),
        ({"power_limit_w": "-5"}, "must be above 0"),
    ],
)
def test_bad_lever_text_is_refused_with_its_fix(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        form.parse_levers(raw)
    assert err.value.fix


# --- the screen -----------------------------------------------------------------------------------
@pilot_test
async def test_launch_levers_round_trip_through_the_draft_and_toml(small_db: Path, tmp_path: Path) -> None:
    from wattlab.sessions.spec import load_sweep

    app = make_app(small_db)
    target = tmp_path / "levers.toml"
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        caps = [screen.query_one(f"#{key}", Input) for key in form.CAP_FIELDS]
        # the static box has no GPU meter: on auto or cpu the caps are greyed out, with the hint
        assert all(c.disabled for c in caps)
        transform_menu = screen.query_one("#transform", Select)
        assert "prune:2:4" not in [v for _, v in transform_menu._options]
        screen.query_one("#device", Select).value = "cuda"
        await settle(pilot)
        assert not any(c.disabled for c in caps)
        assert "prune:2:4" in [v for _, v in transform_menu._options]

        # one Add: two transforms (none and a pruning) x two power caps, prompt lookup fixed
        transform_menu.value = "prune:layers:2"
        screen.query_one("#transform_text", Input).value = "none,prune:layers:2"
        screen.query_one("#speculative", Select).value = "ngram:4"
        screen.query_one("#power_limit_w", Input).value = "200,250"
        screen.query_one("#sm_clock_mhz", Input).value = "1410"
        await pilot.press("ctrl+n")
        await settle(pilot, 0.5)
        assert widget_text(app, "#launch-error") == ""
        rows = screen.draft.rows
        assert len(rows) == 4
        assert {(r.get("transform"), r["power_limit_w"]) for r in rows} == {
            (None, 200.0),
            (None, 250.0),
            ("prune:layers:2", 200.0),
            ("prune:layers:2", 250.0),
        }
        assert all(r["speculative"] == "ngram:4" and r["sm_clock_mhz"] == 1410 for r in rows)
        grid = screen.query_one("#launch-grid")
        cells = [str(c) for c in grid.get_row_at(2)]
        assert any("transform=prune:layers:2" in c and "power_limit_w=200" in c for c in cells)

        await pilot.press("ctrl+s")
        await settle(pilot)
        app.screen.query_one("#path", Input).value = str(target)
        await pilot.press("enter")
        await settle(pilot, 0.5)
        specs = [s for s, _ in load_sweep(target).runs]
        assert {(s.transform, s.power_limit_w, s.speculative, s.sm_clock_mhz) for s in specs} == {
            (t, w, "ngram:4", 1410) for t in (None, "prune:layers:2") for w in (200.0, 250.0)
        }

        saved = [dict(r) for r in rows]
        await pilot.press("ctrl+o")
        await settle(pilot)
        app.screen.query_one("#path", Input).value = str(target)
        await pilot.press("enter")
        await settle(pilot, 0.5)
        assert app.screen.draft.rows == saved

        # back on the CPU the caps are greyed out, and a typed cap is not part of the run
        screen.query_one("#device", Select).value = "cpu"
        await settle(pilot)
        assert all(c.disabled for c in caps) and "GPU caps" in widget_text(app, "#launch-hint")
        assert "power_limit_w" not in screen._raw() or screen._raw()["power_limit_w"] == ""


@pilot_test
async def test_lever_fields_fit_80x24_and_bad_text_shows_under_the_form(small_db: Path) -> None:
    app = make_app(small_db)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        for key in ("transform", "speculative_text", "mem_clock_mhz"):
            widget = screen.query_one(f"#{key}")
            widget.scroll_visible(animate=False)
            await settle(pilot, 0.1)
            region = widget.region
            assert region.height >= 1 and 0 <= region.y < 24 and region.right <= 80, key
        # a transform outside the grammar: its message and the forms allowed, nothing added
        screen.query_one("#transform_text", Input).value = "prune:everything"
        await pilot.press("ctrl+n")
        await settle(pilot)
        error = widget_text(app, "#launch-error")
        assert "transform = 'prune:everything'" in error and "prune:magnitude:S" in error
        assert screen.draft.rows == []


# --- where the levers show: wattlab ls and History ------------------------------------------------
def _lever_db(path: Path) -> Path:
    from wattlab.sessions import commit
    from wattlab.sessions.store import Store

    store = Store(path)
    with store.writer() as con:
        for sid in ("s1", "s2"):
            commit.write_session(con, {"session_id": sid, "status": "finished", "created_at": "2026-11-29"})
        runs = [
            ("s1-001", "s1", None, None),
            ("s1-002", "s1", "prune:layers:2", None),
            ("s1-003", "s1", None, "ngram:4"),
            ("s2-001", "s2", None, None),
        ]
        for seq, (rid, sid, transform, speculative) in enumerate(runs, 1):
            row = {"run_id": rid, "session_id": sid, "seq": seq, "status": "finished", "engine": "fake"}
            row |= {
                "model": "m",
                "quant": "q",
                "j_per_token": 0.1,
                "energy_j": 5.0,
                "energy_method": "counter",
            }
            commit.write_run(con, {**row, "transform": transform, "speculative": speculative})
    return path


def test_ls_shows_lever_columns_only_where_a_run_has_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from wattlab.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    db = _lever_db(tmp_path / "w.duckdb")
    assert main(["ls", "s1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "┃ run " in line)
    assert header.index("quant") < header.index("transform") < header.index("spec") < header.index("┃ mode ")
    assert "prune:layers:2" in out and "ngram:4" in out
    assert main(["ls", "s2", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "transform" not in out and "spec" not in out
    assert main(["ls", "s1", "--json", "--db", str(db)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["run_id"]: (r["transform"], r["speculative"]) for r in rows}["s1-002"] == (
        "prune:layers:2",
        None,
    )


@pilot_test
async def test_history_shows_lever_columns_only_where_a_run_has_one(tmp_path: Path) -> None:
    from textual.widgets import DataTable

    app = make_app(_lever_db(tmp_path / "w.duckdb"))
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        runs = app.screen.query_one("#runs", DataTable)
        keys = [str(c.key.value) for c in runs.columns.values()]
        assert "transform" in keys and "spec" in keys  # the list spans both sessions
        assert any(
            "prune:layers:2" in str(cell) for row in range(runs.row_count) for cell in runs.get_row_at(row)
        )
        app.screen._set_filter(session_id="s2")  # what choosing session s2 in the sessions table does
        await settle(pilot)
        keys = [str(c.key.value) for c in runs.columns.values()]
        assert "transform" not in keys and "spec" not in keys


@pilot_test
async def test_history_at_80_columns_drops_a_column_every_run_shares_before_the_transform(
    tmp_path: Path,
) -> None:
    """A lever study: one engine, one model, one variant, four transforms. At 80 columns the
    transform (what tells the rows apart) is shown, the long model name all of them share is not."""
    from textual.widgets import DataTable

    from wattlab.sessions import commit
    from wattlab.sessions.store import Store

    store = Store(tmp_path / "w.duckdb")
    sid = "261130-010753-9a3d"
    transforms = (None, "prune:layers:2", "prune:magnitude:0.3", "lora:16:merged")
    with store.writer() as con:
        commit.write_session(con, {"session_id": sid, "status": "finished", "created_at": "2026-11-30"})
        for seq, transform in enumerate(transforms, 1):
            row = {"run_id": f"{sid}-{seq:03d}", "session_id": sid, "seq": seq, "status": "finished"}
            row |= {
                "engine": "llamacpp",
                "model": "smollm2-135m-instruct",
                "quant": "Q4_1",
                "batch_size": seq,
            }
            row |= {"j_per_token": 0.1 * seq, "energy_j": 5.0 * seq, "energy_method": "counter"}
            commit.write_run(con, {**row, "transform": transform})
    app = make_app(store.path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        await settle(pilot)
        runs = app.screen.query_one("#runs", DataTable)
        keys = [str(c.key.value) for c in runs.columns.values()]
        assert "transform" in keys and "model" not in keys, keys
        assert {"run_id", "energy_j", "j_per_token"} <= set(keys)
        cells = [str(cell) for row in range(runs.row_count) for cell in runs.get_row_at(row)]
        assert "prune:magnitude:0.3" in cells and any(c.endswith("9a3d-004") for c in cells)
