"""OpenAI-compatible server adapter (vllm serve, llama.cpp's llama-server, TGI): load from outside.

Requests go to `POST {base_url}/completions` with the prompt as token ids (wattlab's template and
the server's tokenizer, so the server sees exactly the ids the other engines see) and
`stream: true`; every SSE chunk is stamped with `time.monotonic_ns()` as it is read, which gives
TTFT and inter-token times as a client measures them. Energy is metered on the local box by the
runner: for a server on this box that is the server's energy, plus this client's small share.

Token ids per chunk come from the server where it sends them (vLLM: `return_token_ids`;
llama-server: `return_tokens`), else from tokenizing the streamed text with the server's tokenizer.
A final chunk that carries one id and no text on a `stop` finish is the EOS and is not counted,
as on the in-process engines. Servers take per-request extensions wattlab sends when asked:
`min_tokens` / `ignore_eos` for exact lengths, `top_k`, `seed`.

Concurrency is a thread pool of `batch_size` (offline) or `max_concurrency` (online) workers;
online requests are submitted at their arrival time and wait in the pool's queue if all are busy.
Only the standard library is used (http.client), so this engine installs nothing.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wattlab.engines import _common
from wattlab.engines.base import Completion, Decoding, EngineConfig, Progress, Request, ServingEngine
from wattlab.engines.specs import openai as _spec
from wattlab.errors import EngineError


class _Http:
    """One keep-alive connection per thread to the server."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float) -> None:
        parsed = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise EngineError(
                f"base_url {base_url!r} is not an http(s) URL", fix="e.g. http://127.0.0.1:8000/v1"
            )
        self.scheme, self.host, self.port = parsed.scheme, parsed.hostname, parsed.port
        self.prefix = parsed.path  # "/v1"
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream, application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s
        self.local = threading.local()

    def connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None or fresh:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout_s)
            self.local.conn = conn
        return conn

    def open(self, method: str, path: str, body: dict[str, Any] | None = None) -> http.client.HTTPResponse:
        """Send a request (retrying once on a stale keep-alive connection) and return the response."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            conn = self.connection(fresh=attempt == 1)
            try:
                conn.request(method, path, body=data, headers=self.headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.open(method, path, body)
        payload = response.read()
        if response.status >= 400:
            raise EngineError(
                f"{method} {path} answered HTTP {response.status}: {payload[:300].decode(errors='replace')}",
                fix="check the server's log",
            )
        return json.loads(payload)


class OpenAIEngine(ServingEngine):
    SPEC = _spec.SPEC  # name and SUPPORTS_* flags derive from it (engines/base.py)

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        opts = config.options
        self.base_url = str(opts.get("base_url", config.path))
        self.http = _Http(self.base_url, opts.get("api_key"), float(opts.get("timeout_s", 600.0)))
        self.served_model: str | None = opts.get("served_model")
        self._tokenize_style: str | None = None
        self.server_version = "unknown"

    @classmethod
    def version(cls) -> str:
        return "openai-compatible HTTP client (stdlib)"

    # --- load: find the server, its model and its tokenizer ---------------------------------------
    def load(self) -> None:
        try:
            models = self.http.json("GET", f"{self.http.prefix}/models")
        except (OSError, http.client.HTTPException) as exc:
            raise EngineError(
                f"cannot reach an OpenAI-compatible server at {self.base_url}: {exc}",
                fix="start the server (e.g. `vllm serve MODEL` or `llama-server -m FILE.gguf`) or set "
                "the base_url option",
                title="Server not reachable",
            ) from exc
        served = [m.get("id") for m in models.get("data", [])]
        if self.served_model is None:
            if not served:
                raise EngineError(
                    f"the server at {self.base_url} serves no model", fix="start it with a model"
                )
            self.served_model = served[0]
        elif self.served_model not in served:
            raise EngineError(
                f"the server at {self.base_url} does not serve {self.served_model!r}",
                fix=f"set served_model to one of: {', '.join(map(str, served))}",
            )
        self._tokenize_style = self._probe_tokenizer()

    def _root(self) -> str:
        """The server root: the base URL's path without its trailing /v1."""
        prefix = self.http.prefix
        return prefix[: -len("/v1")] if prefix.endswith("/v1") else prefix

    def _probe_tokenizer(self) -> str:
        probe = "<|im_start|>hi"
        for style in ("vllm", "llamacpp"):
            try:
                self._tokenize_with(style, probe)
                return style
            except (EngineError, KeyError, ValueError, OSError, http.client.HTTPException):
                continue
        raise EngineError(
            f"the server at {self.base_url} has no /tokenize endpoint that wattlab knows",
            fix="use vllm serve or llama.cpp's llama-server (both expose the tokenizer wattlab needs to "
            "send token ids and count tokens)",
        )

    def _tokenize_with(self, style: str, text: str) -> list[int]:
        if style == "vllm":
            body = {"model": self.served_model, "prompt": text, "add_special_tokens": False}
        else:
            body = {"content": text, "add_special": False, "parse_special": True}
        reply = self.http.json("POST", f"{self._root()}/tokenize", body)
        return [int(t["id"]) if isinstance(t, dict) else int(t) for t in reply["tokens"]]

    # --- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        if self._tokenize_style is None:
            raise EngineError("the openai engine is not loaded", fix="call load() first")
        return self._tokenize_with(self._tokenize_style, text)

    def detokenize(self, ids: list[int]) -> str:
        """The server's detokenizer. vLLM's /detokenize keeps special tokens (it has no switch)."""
        if not ids:
            return ""
        if self._tokenize_style == "vllm":
            return str(
                self.http.json(
                    "POST", f"{self._root()}/detokenize", {"model": self.served_model, "tokens": ids}
                )["prompt"]
            )
        return str(self.http.json("POST", f"{self._root()}/detokenize", {"tokens": ids})["content"])

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Unknown to the client: the server stops at its model's EOS itself."""
        return ()

    # --- generation -----------------------------------------------------------------------------
    def _serve(
        self, requests: list[Request], decoding: Decoding, width: int, online: bool, progress: Progress | None
    ) -> list[Completion]:
        _common.check_ready(self, self._tokenize_style is not None, decoding)
        if width < 1:
            raise EngineError(f"concurrency {width} is below 1", fix="use a batch size of at least 1")
        done = _common.new_completions(requests, time.monotonic_ns(), online)
        order = sorted(range(len(requests)), key=lambda i: (done[i].arrival_ns, i))
        lock = threading.Lock()

        def report(n: int) -> None:
            if progress:
                with lock:
                    progress(n)

        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="wattlab-openai") as pool:
            futures = []
            for i in order:
                if online:
                    _common.sleep_until(done[i].arrival_ns)
                futures.append(pool.submit(self._one, requests[i], decoding, done[i], report))
            for future in futures:
                future.result()
        return done

    def _body(self, request: Request, decoding: Decoding) -> dict[str, Any]:
        sample = decoding.strategy == "sample"
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": list(request.prompt_ids),
            "max_tokens": request.max_new_tokens,
            "temperature": decoding.temperature if sample else 0.0,
            "top_p": decoding.top_p if sample else 1.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "return_token_ids": True,  # vLLM: the ids of each chunk
            "return_tokens": True,  # llama-server: the same
            "skip_special_tokens": True,
        }
        if sample:
            body["seed"] = _common.request_seed(decoding.seed, request.id)
            if decoding.top_k:
                body["top_k"] = decoding.top_k
        if request.min_new_tokens:
            body["min_tokens"] = request.min_new_tokens
            body["ignore_eos"] = request.min_new_tokens >= request.max_new_tokens
        return body

    def _one(self, request: Request, decoding: Decoding, completion: Completion, report: Progress) -> None:
        """Stream one completion; a failure is recorded on it, not raised (the batch goes on)."""
        completion.start_ns = time.monotonic_ns()
        last_ids: list[int] = []
        last_text = ""
        texts: list[str] = []
        try:
            response = self.http.open(
                "POST", f"{self.http.prefix}/completions", self._body(request, decoding)
            )
            if response.status >= 400:
                detail = response.read()[:300].decode(errors="replace")
                _common.fail(completion, f"HTTP {response.status}: {detail}")
                return
            while True:
                line = response.readline()
                if not line:
                    break
                t = time.monotonic_ns()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    _common.fail(completion, f"server error: {chunk['error']}")
                    return
                for choice in chunk.get("choices") or []:
                    text = choice.get("text") or ""
                    ids = choice.get("token_ids") or choice.get("tokens")
                    ids = [int(x) for x in ids] if isinstance(ids, list) else ([-1] if text else [])
                    completion.record_tokens(ids, t)
                    texts.append(text)
                    last_ids, last_text = ids, text
                    if ids:
                        report(len(ids))
                    if choice.get("finish_reason"):
                        completion.finish_reason = str(choice["finish_reason"])
                        completion.end_ns = t
            response.read()  # drain the stream's end, so the keep-alive connection can be reused
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            _common.fail(completion, f"{type(exc).__name__}: {exc}")
            return
        if completion.finish_reason == "stop" and len(last_ids) == 1 and not last_text:
            del completion.output_ids[-1:]  # the EOS: no text, ended the request
            del completion.token_ns[-1:]
        completion.text = "".join(texts)
        if -1 in completion.output_ids:  # the server sent text only: count with its tokenizer
            times = completion.token_ns
            completion.output_ids = self.tokenize(completion.text)
            completion.token_ns = [times[min(k, len(times) - 1)] for k in range(len(completion.output_ids))]
        completion.first_token_ns = completion.token_ns[0] if completion.token_ns else None
        completion.end_ns = completion.end_ns or time.monotonic_ns()
        completion.finish_reason = completion.finish_reason or "stop"

    def close(self) -> None:
        conn = getattr(self.http.local, "conn", None)
        if conn is not None:
            conn.close()
