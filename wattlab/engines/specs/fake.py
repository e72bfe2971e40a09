"""The hidden test engine (adapter: engines/fake.py): deterministic tokens, failures on demand.

Light like every spec: the adapter's option values are checked when it loads.
"""

from __future__ import annotations

from wattlab.engines.spec import EngineSpec, Option

FAKE_VARIANT = "fake"  # its only variant; it takes any model name (`fake:<anything>`)

SPEC = EngineSpec(
    "fake",
    "deterministic tokens and timings, failures on demand (tests; any model name)",
    "wattlab.engines.fake:FakeEngine",
    extra=None,
    abilities=frozenset({"online", "sampling", "logprobs"}),
    hidden=True,
    options=(
        Option("tok_s", float, "decode tokens per second, per sequence (default 200)"),
        Option("prefill_tok_s", float, "prompt tokens per second (default 2000)"),
        Option("tokens_per_step", int, "tokens each sequence gets per step (default 1)"),
        Option("load_s", float, "seconds load() takes (default 0.05)"),
        Option("eos_after", int, "stop each output with EOS after this many tokens (default: never)"),
        Option("fail", str, "crash | hang | oom | error | segv: fail on purpose"),
        Option("fail_after_tokens", int, "fail once this many tokens were generated since load"),
        Option("fail_at", str, "generate | load: when `fail` strikes (default generate)"),
    ),
    model_kind="fake",
    variants=(FAKE_VARIANT,),
    default_device="cpu",
    chat_template="chatml",
)
