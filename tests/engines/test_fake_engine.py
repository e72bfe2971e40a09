"""The fake engine: a real Engine the worker hosts, with deterministic tokens, timings that really
pass, continuous batching, online arrivals, and failures on demand. Hidden from menus and doctor."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wattlab.engines import ENGINES, engine_names, engine_status, get_engine_class, spec_of
from wattlab.engines._common import OOM_FIX
from wattlab.engines.base import Decoding, Engine, Request
from wattlab.engines.fake import CRASH_EXIT_CODE, EOS_ID, WORD_OFFSET, FakeEngine, detokenize, tokenize
from wattlab.engines.models import resolve, variants
from wattlab.errors import ConfigError, EngineCrashed, EngineError, OutOfMemory
from wattlab.sessions.worker import WorkerClient

GREEDY = Decoding()


def load(max_batch: int = 4, **options: object) -> FakeEngine:
    engine = FakeEngine(resolve("fake:test", "fake", max_batch=max_batch, options={"load_s": 0, **options}))
    engine.load()
    return engine


def requests(n: int, prompt_len: int = 10, out: int = 5) -> list[Request]:
    return [Request(i, tuple(range(3 + i, 3 + i + prompt_len)), out, min_new_tokens=out) for i in range(n)]


# --- registry and catalog ----------------------------------------------------------------------------
def test_fake_is_registered_hidden_and_installed_always() -> None:
    assert ENGINES["fake"].hidden and not ENGINES["fake"].extra
    assert get_engine_class("fake") is FakeEngine and issubclass(FakeEngine, Engine)
    assert "fake" not in engine_names()
    assert "fake" not in [s.name for s in engine_status()]
    with pytest.raises(ConfigError) as err:
        spec_of("warpdrive")
    assert "fake" not in (err.value.fix or "")


def test_doctor_and_the_launch_menu_leave_it_out() -> None:
    from wattlab.app.catalog import Catalog
    from wattlab.doctor import diagnose

    assert "fake" not in Catalog().engine_names()
    assert "fake" not in [e["name"] for e in diagnose()["engines"]]


def test_any_model_name_resolves_without_files(tmp_path: Path) -> None:
    for name in ("fake:anything", "no-such-model", str(tmp_path / "missing.gguf")):
        cfg = resolve(name, "fake")
        assert (cfg.engine, cfg.fmt, cfg.model, cfg.device) == ("fake", "fake", name, "cpu")
        assert cfg.options["chat_template"] == "chatml"
    assert variants("fake:x", "fake") == ["fake"]
    with pytest.raises(ConfigError, match="no option 'n_gpu_layers'"):
        resolve("fake:x", "fake", options={"n_gpu_layers": 3})


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"fail": "explode"}, "fail = one of crash, hang, oom, error"),
        ({"tok_s": 0}, "tok_s"),
        ({"fail": "error", "fail_at": "warmup"}, "fail_at"),
        ({"tokens_per_step": 0}, "tokens_per_step"),
    ],
)
def test_bad_options_are_refused_naming_the_fix(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(**options)
    assert named in err.value.message + (err.value.fix or "")


# --- tokens ----------------------------------------------------------------------------------------
def test_tokenization_is_deterministic_and_round_trips() -> None:
    text = "<|im_start|>user\nthe energy of a token is measured in joules — déjà vu<|im_end|>\n"
    ids = tokenize(text)
    assert ids == tokenize(text)
    assert ids[0] == 1 and EOS_ID in ids  # ChatML markers are one id each
    assert tokenize(" energy") == [WORD_OFFSET + 1]  # a known word is one id
    assert detokenize(ids) == text.replace("<|im_start|>", "").replace("<|im_end|>", "")
    engine = load()
    assert engine.detokenize(engine.tokenize("plain text, no words known?")) == "plain text, no words known?"


# --- generation ------------------------------------------------------------------------------------
def test_outputs_are_deterministic_exact_and_independent_of_batching() -> None:
    engine = load()
    one = engine.generate(requests(4, out=6), GREEDY, batch_size=1)
    four = engine.generate(requests(4, out=6), GREEDY, batch_size=4)
    assert [c.output_ids for c in one] == [c.output_ids for c in four]
    assert all(c.output_tokens == 6 and c.finish_reason == "length" for c in four)
    assert all(tokenize(c.text) == c.output_ids for c in four)  # outputs are words of the vocabulary
    assert len({tuple(c.output_ids) for c in four}) > 1  # different prompts, different outputs


def test_sampling_follows_the_seed() -> None:
    engine = load()
    sample = Decoding(strategy="sample", seed=1)
    a = engine.generate(requests(2, out=12), sample, batch_size=2)
    b = engine.generate(requests(2, out=12), sample, batch_size=2)
    c = engine.generate(requests(2, out=12), Decoding(strategy="sample", seed=2), batch_size=2)
    assert [x.output_ids for x in a] == [x.output_ids for x in b] != [x.output_ids for x in c]
    with pytest.raises(EngineError, match="no beam search"):
        engine.generate(requests(1), Decoding(strategy="beam", num_beams=2), batch_size=1)


def test_timings_follow_the_options_and_really_pass() -> None:
    tok_s, prefill_tok_s, prompt, out = 100.0, 1000.0, 50, 6
    engine = load(tok_s=tok_s, prefill_tok_s=prefill_tok_s)
    t0 = time.monotonic_ns()
    (c,) = engine.generate(requests(1, prompt_len=prompt, out=out), GREEDY, batch_size=1)
    wall = (time.monotonic_ns() - t0) / 1e9
    assert c.first_token_ns is not None and c.end_ns is not None
    ttft = (c.first_token_ns - c.arrival_ns) / 1e9
    gaps = [(b - a) / 1e9 for a, b in zip(c.token_ns, c.token_ns[1:], strict=False)]
    expected_total = prompt / prefill_tok_s + (out - 1) / tok_s
    assert ttft == pytest.approx(prompt / prefill_tok_s, rel=0.05)
    assert all(g == pytest.approx(1 / tok_s, rel=0.05) for g in gaps)
    assert wall >= expected_total and c.end_ns == c.token_ns[-1]


def test_batching_shares_steps_and_progress_counts_every_token() -> None:
    """tok_s is per sequence: 4 requests at batch 4 decode together, at batch 1 one after another."""
    engine = load(tok_s=200.0, prefill_tok_s=1e6)
    seen: list[int] = []

    def timed(batch: int) -> float:
        t0 = time.monotonic_ns()
        engine.generate(requests(4, out=8), GREEDY, batch_size=batch, progress=seen.append)
        return (time.monotonic_ns() - t0) / 1e9

    narrow, wide = timed(1), timed(4)
    assert sum(seen) == 2 * 4 * 8
    assert narrow == pytest.approx(4 * wide, rel=0.25)


def test_token_batches_share_one_time() -> None:
    engine = load(tokens_per_step=4, tok_s=400.0)
    (c,) = engine.generate(requests(1, out=9), GREEDY, batch_size=1)
    # first token from the prefill, then steps of 4 tokens stamped together
    assert [len([t for t in c.token_ns if t == u]) for u in sorted(set(c.token_ns))] == [1, 4, 4]


def test_eos_ends_outputs_once_min_new_tokens_allow() -> None:
    engine = load(eos_after=3)
    free, forced = engine.generate(
        [Request(0, (5, 6, 7), 10), Request(1, (5, 6, 7), 10, min_new_tokens=5)], GREEDY, batch_size=2
    )
    assert (free.output_tokens, free.finish_reason) == (3, "stop")
    assert (forced.output_tokens, forced.finish_reason) == (5, "stop")


def test_online_requests_start_at_their_arrival() -> None:
    engine = load(max_batch=2)
    reqs = [Request(i, (5, 6, 7, 8), 3, 3, arrival_s=0.05 * i) for i in range(4)]
    out = engine.generate_online(reqs, GREEDY, max_concurrency=2)
    for c in out:
        assert c.first_token_ns is not None and c.first_token_ns >= c.arrival_ns and c.output_tokens == 3
    assert out[3].arrival_ns - out[0].arrival_ns == pytest.approx(0.15e9, rel=0.01)


def test_bad_requests_fail_alone_and_widths_are_checked() -> None:
    engine = load(max_batch=2)
    bad, good = engine.generate([Request(0, (), 4), Request(1, (5, 6), 4)], GREEDY, batch_size=2)
    assert bad.error == "empty prompt" and bad.finish_reason == "error"
    assert good.error is None and good.output_tokens == 4
    with pytest.raises(ConfigError, match="exceeds the fake engine's max_batch 2"):
        engine.generate(requests(3), GREEDY, batch_size=3)


def test_prompt_logprobs_are_a_uniform_model() -> None:
    engine = load()
    lp = engine.prompt_logprobs([5, 6, 7, 8])
    assert len(lp) == 3 and len(set(lp)) == 1 and lp[0] < 0


# --- failures in process ---------------------------------------------------------------------------
def test_oom_raises_the_translated_error_with_its_fix() -> None:
    engine = load(fail="oom")
    with pytest.raises(OutOfMemory) as err:
        engine.generate(requests(1), GREEDY, batch_size=1)
    assert "out of memory" in err.value.message and err.value.fix == OOM_FIX


def test_fail_after_tokens_strikes_mid_generation() -> None:
    engine = load(fail="error", fail_after_tokens=7)
    seen: list[int] = []
    engine.generate(requests(1, out=4), GREEDY, batch_size=1, progress=seen.append)  # 4 < 7: fine
    with pytest.raises(EngineError, match="failed on purpose") as err:
        engine.generate(requests(1, out=10), GREEDY, batch_size=1, progress=seen.append)
    assert sum(seen) == 7 and "after 7 tokens" in err.value.message


def test_fail_at_load() -> None:
    with pytest.raises(EngineError, match="while loading"):
        load(fail="error", fail_at="load")


# --- failures in the worker subprocess -------------------------------------------------------------
def _worker(tmp_path: Path, **options: object) -> WorkerClient:
    client = WorkerClient(tmp_path / "worker.log")
    client.call(
        "load",
        config={"engine": "fake", "model": "fake:w", "options": {"load_s": 0, **options}},
        timeout_s=60,
    )
    return client


def _generate(client: WorkerClient, timeout_s: float | None = 60) -> dict[str, object]:
    reqs = [r.as_dict() for r in requests(1, out=20)]
    return client.call(
        "generate", requests=reqs, decoding=GREEDY.as_dict(), batch_size=1, timeout_s=timeout_s
    )


def test_the_worker_hosts_it_and_streams_marks(tmp_path: Path) -> None:
    marks: list[str] = []
    client = WorkerClient(tmp_path / "worker.log", on_mark=lambda name, t, data: marks.append(name))
    try:
        info = client.call("load", config={"engine": "fake", "model": "fake:w"}, timeout_s=60)
        assert info["caps"] == {"online": True, "beam": False, "sampling": True, "logprobs": True}
        assert info["devices"] == ["cpu"] and info["variant"] == "fake"
        out = _generate(client)
        completions = out["completions"]
        assert isinstance(completions, list) and completions[0]["output_ids"]
        assert marks == ["load_start", "load_end", "run_start", "run_end"]
    finally:
        client.close()


def test_a_crash_kills_the_worker_and_says_so(tmp_path: Path) -> None:
    client = _worker(tmp_path, fail="crash", fail_after_tokens=5)
    try:
        with pytest.raises(EngineCrashed) as err:
            _generate(client)
        assert f"exited with code {CRASH_EXIT_CODE}" in err.value.message
        assert "crashing on purpose" in err.value.message  # the log's tail travels with the error
        assert not client.alive
    finally:
        client.close()


def test_a_hang_hits_the_timeout_and_the_worker_is_stopped(tmp_path: Path) -> None:
    client = _worker(tmp_path, fail="hang")
    try:
        t0 = time.monotonic()
        with pytest.raises(EngineError, match="did not answer within 1 s") as err:
            _generate(client, timeout_s=1.0)
        assert time.monotonic() - t0 < 5 and err.value.title == "Engine timed out"
        assert not client.alive
    finally:
        client.close()
