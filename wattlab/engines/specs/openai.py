"""The OpenAI-compatible HTTP engine (stdlib only; adapter: openai_engine.py)."""

from __future__ import annotations

from wattlab.engines.spec import EngineSpec, Option

SPEC = EngineSpec(
    "openai",
    "any OpenAI-compatible server (vllm serve, llama.cpp server, TGI) over HTTP",
    "wattlab.engines.openai_engine:OpenAIEngine",
    extra=None,
    abilities=frozenset({"online", "sampling"}),
    options=(
        Option("base_url", str, "the server's OpenAI API root, e.g. http://127.0.0.1:8000/v1"),
        Option("api_key", str, "bearer token, if the server wants one"),
        Option("served_model", str, "model name the server knows (default: the first of GET /models)"),
        Option("timeout_s", float, "per-request timeout in seconds (default 600)"),
    ),
    model_kind="served",
    variants=("served",),
    chat_template="chatml",
    order=4,
    guess_tok_s=30.0,
)
