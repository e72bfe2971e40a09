"""The one chat template wattlab applies itself, so a prompt is the same token ids on every engine.

Engines never template: they receive token ids. The runner renders messages to text here, then
tokenizes with the engine's `tokenize` (which parses the template's special markers and adds no BOS
of its own). Two formats cover the catalog:

- ChatML (`<|im_start|>role\\n...<|im_end|>\\n`): SmolLM2 and Qwen2.5. Both models' own templates
  insert a default system message when the conversation has none; the `smollm2` and `qwen2.5`
  templates reproduce that (SmolLM2's text is the one in its GGUF's `tokenizer.chat_template`).
- Llama-3 (`<|begin_of_text|><|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>`): Llama 3.x.
  Its BOS is part of the rendered text, since tokenize adds none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wattlab.errors import ConfigError

Message = Mapping[str, str]
"""One chat turn: {"role": "system" | "user" | "assistant", "content": "..."}."""

SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@dataclass(frozen=True, slots=True)
class Template:
    """A chat format and the system message the model's own template adds when none is given."""

    name: str
    style: str  # "chatml" | "llama3"
    default_system: str | None = None


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("chatml", "chatml"),
        Template("smollm2", "chatml", SMOLLM2_SYSTEM),
        Template("qwen2.5", "chatml", QWEN25_SYSTEM),
        Template("llama3", "llama3"),
    )
}

_ROLES = ("system", "user", "assistant")


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(
            f"unknown chat template {name!r}",
            fix=f"use one of: {', '.join(TEMPLATES)}",
        ) from None


def render(messages: Sequence[Message], template: str, add_generation_prompt: bool = True) -> str:
    """Render a conversation to the prompt text the model was trained on.

    add_generation_prompt: end with the assistant header, so the model answers next.
    """
    tpl = get_template(template)
    turns = _validated(messages)
    if tpl.default_system is not None and (not turns or turns[0][0] != "system"):
        turns.insert(0, ("system", tpl.default_system))
    if tpl.style == "chatml":
        text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")
    text = "<|begin_of_text|>" + "".join(
        f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>" for role, content in turns
    )
    return text + ("<|start_header_id|>assistant<|end_header_id|>\n\n" if add_generation_prompt else "")


def render_user(prompt: str, template: str) -> str:
    """Shorthand for the common case: one user message, then the assistant's turn."""
    return render([{"role": "user", "content": prompt}], template)


def detect_style(template_source: str | None) -> str | None:
    """Guess the wattlab template from a model's own Jinja chat template (GGUF or tokenizer_config).

    Returns None when the source is missing or in a format wattlab does not render.
    """
    if not template_source:
        return None
    if "<|start_header_id|>" in template_source:
        return "llama3"
    if "<|im_start|>" in template_source:
        if "SmolLM" in template_source:
            return "smollm2"
        if "Qwen" in template_source:
            return "qwen2.5"
        return "chatml"
    return None


def _validated(messages: Sequence[Message]) -> list[tuple[str, str]]:
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES or not isinstance(content, str):
            raise ConfigError(
                f"chat message {i} is {dict(message)!r}",
                fix='give each message a "role" (system, user or assistant) and a string "content"',
            )
        turns.append((role, content))
    return turns
