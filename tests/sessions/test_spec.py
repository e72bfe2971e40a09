"""Sweep TOML parsing: grids, defaults, ordering for engine reuse, and errors that name key and line."""

from __future__ import annotations

import pytest

from wattlab.errors import ConfigError
from wattlab.sessions.spec import RunSpec, SessionSettings, dump_sweep, make_spec, parse_sweep

SWEEP = """
[session]
name = "batch study"
idle_s = 1
cooldown_s = "settle"
country = "FRA"

[defaults]
input_tokens = 64
output_tokens = 16

[grid]
engine = ["transformers", "llamacpp"]
batch_size = [1, 4]

[[runs]]
engine = "llamacpp"
mode = "online"
rate = 2.0
requests = 6
"""


def test_grid_defaults_and_explicit_runs() -> None:
    sweep = parse_sweep(SWEEP, "s.toml")
    specs = [s for s, _ in sweep.runs]
    assert len(specs) == 5
    assert all(s.input_tokens == 64 and s.output_tokens == 16 for s in specs)
    assert sweep.session.name == "batch study" and sweep.session.cooldown_s == "settle"
    online = [s for s in specs if s.mode == "online"]
    assert len(online) == 1 and online[0].rate == 2.0 and online[0].n_requests == 6


def test_runs_sharing_an_engine_load_are_adjacent() -> None:
    sweep = parse_sweep(SWEEP, "s.toml")
    engines = [s.engine for s, _ in sweep.runs]
    # transformers x2 then llamacpp x3 (grid order interleaves them, the sweep groups them)
    assert engines == ["transformers", "transformers", "llamacpp", "llamacpp", "llamacpp"]


def test_repeats_multiply_runs_with_distinct_keys() -> None:
    sweep = parse_sweep("[grid]\nbatch_size = [1, 2]\n[defaults]\nrepeats = 3\n", "r.toml")
    assert len(sweep.runs) == 6
    keys = {s.key(r) for s, r in sweep.runs}
    assert len(keys) == 6
    assert sweep.hash() == parse_sweep("[grid]\nbatch_size = [1, 2]\n[defaults]\nrepeats = 3\n").hash()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "[grid]\nbatch_size = [1]\nbatchsize = [2]\n",
            "unknown key 'batchsize' in [grid] of f.toml (line 3)",
        ),
        ('[defaults]\nbatch_size = "8"\n', "batch_size in [defaults] of f.toml (line 2) has the wrong type"),
        ("[grid]\nengine = []\n", "grid axis 'engine' in [grid] of f.toml (line 2) is an empty list"),
        ("[session]\nidle = 3\n", "unknown key 'idle' in [session] of f.toml (line 2)"),
        ("[sesion]\nidle_s = 3\n", "unknown section [sesion]"),
        ('[grid]\nmode = ["offline", "batchy"]\n', "mode = 'batchy' is not one of offline, online"),
        ("", "defines no runs"),
        ("[grid\n", "is not valid TOML"),
    ],
)
def test_errors_name_the_key_and_line(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_sweep(text, "f.toml")
    assert needle in str(err.value)
    assert err.value.fix


def test_impossible_specs_are_rejected() -> None:
    with pytest.raises(ConfigError, match="num_beams"):
        RunSpec(decoding="beam", num_beams=1)
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        make_spec({"batch_size": 0})
    with pytest.raises(ConfigError, match="rate must be positive"):
        RunSpec(mode="online", rate=-1.0)


def test_dump_then_parse_round_trips() -> None:
    text = dump_sweep(
        SessionSettings(name="x", idle_s=1.0),
        {"input_tokens": 32},
        {"engine": ["llamacpp"], "batch_size": [1, 2]},
    )
    sweep = parse_sweep(text)
    assert [s.batch_size for s, _ in sweep.runs] == [1, 2]
    assert all(s.input_tokens == 32 for s, _ in sweep.runs)
    assert sweep.session.name == "x"
