"""The one chat template: the same text as the models' own Jinja templates, validated input."""

from __future__ import annotations

import pytest

from wattlab.engines.chat import SMOLLM2_SYSTEM, detect_style, render, render_user
from wattlab.engines.gguf_meta import read_metadata
from wattlab.engines.models import bundled_gguf
from wattlab.errors import ConfigError

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_smollm2_matches_the_template_shipped_in_its_gguf(messages: list[dict[str, str]]) -> None:
    jinja2 = pytest.importorskip("jinja2")
    path = bundled_gguf()
    if path is None:
        pytest.skip("the bundled model is not installed")
    source = read_metadata(path)["tokenizer.chat_template"]
    expected = jinja2.Template(source).render(messages=messages, add_generation_prompt=True)
    assert render(messages, "smollm2") == expected


def test_default_system_prompt_only_when_none_is_given() -> None:
    text = render_user("Hi", "smollm2")
    assert text.startswith(f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert render_user("Hi", "chatml") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert "Qwen" in render_user("Hi", "qwen2.5")


def test_llama3_format() -> None:
    text = render([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], "llama3")
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert not render([{"role": "user", "content": "U"}], "llama3", add_generation_prompt=False).endswith(
        "\n\n"
    )


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown chat template"):
        render_user("Hi", "alpaca")
    with pytest.raises(ConfigError, match="chat message 0"):
        render([{"role": "robot", "content": "beep"}], "chatml")
    with pytest.raises(ConfigError, match="chat message 1"):
        render([{"role": "user", "content": "ok"}, {"role": "user"}], "chatml")


def test_detect_style_from_model_templates() -> None:
    assert (
        detect_style("{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM' }}") == "smollm2"
    )
    assert detect_style("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.") == "qwen2.5"
    assert detect_style("<|start_header_id|>{{ role }}<|end_header_id|>") == "llama3"
    assert detect_style("[INST] {{ content }} [/INST]") is None
    assert detect_style(None) is None
