"""Hugging Face transformers adapter: CPU and CUDA, fp32/bf16/fp16, static batches with left padding.

Each batch is one `model.generate` call over up to `batch_size` requests (in order). Timing comes
from a StoppingCriteria that transformers calls once per decoding step (greedy, sampling and beam
search alike): it waits for the step's tokens (which also synchronizes CUDA, so the time is when
the token exists, not when it was queued) and stamps them with `time.monotonic_ns()`.

Per-request lengths in one static batch: a logits processor bans EOS for a row until that row's
`min_new_tokens`; a stopping criterion ends a row at its own `max_new_tokens`. The batch still runs
until its longest row ends, as static batching does. Outputs are cut at the EOS that ended them.
Online mode is a FIFO: each batch takes whatever has arrived, up to max_concurrency.

Speculation (RunSpec.speculative) is transformers' assisted generation, batch 1 only: `ngram:K` sets
prompt_lookup_num_tokens=K (n-grams of 1..3 tokens, as on llama.cpp and vLLM), `draft:MODEL:K` an
assistant_model drafting exactly K tokens a step. transformers reports no acceptance, so it is
counted: a forward pre-hook on the target model sees each verification pass and its input length
(the first pass takes the prompt plus its drafts, each later one the last token plus its drafts), so
drafted = sum(input lengths) - prompt - (passes - 1); each pass keeps its accepted drafts plus one
token of its own, so accepted = generated - passes.
"""

from __future__ import annotations

import bisect
import importlib.metadata
import time
from typing import Any, cast

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from wattlab.engines import _common, quantize
from wattlab.engines.base import Completion, Decoding, Engine, EngineConfig, Progress, Request
from wattlab.engines.bytetok import ByteTokenizer
from wattlab.engines.levers import Speculation, parse_speculative
from wattlab.engines.prompt_lookup import NGRAM_MAX
from wattlab.engines.specs import transformers as _spec
from wattlab.errors import ConfigError, EngineError, ModelError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class _BanEosUntil(LogitsProcessor):
    """Set EOS logits to -inf for each row that has fewer than its min_new_tokens.

    rows_per_request: 1, or num_beams for beam search (rows are grouped by request).
    """

    def __init__(self, prompt_len: int, mins: list[int], eos: list[int], rows_per_request: int) -> None:
        self.prompt_len = prompt_len
        self.row_mins = torch.tensor(mins).repeat_interleave(rows_per_request)
        self.eos = torch.tensor(eos)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_len
        rows = (self.row_mins > generated).nonzero()[:, 0]
        if len(rows):
            scores[rows[:, None].to(scores.device), self.eos[None, :].to(scores.device)] = float("-inf")
        return scores


class _StepClock(StoppingCriteria):
    """Stamps every decoding step, counts live tokens for progress, and ends rows at their max length.

    per_row: greedy/sampling rows map 1:1 to requests, so rows can be ended individually; beam search
    rows are beam candidates, so only the clock runs there.
    """

    def __init__(
        self,
        prompt_len: int,
        maxes: list[int],
        mins: list[int],
        eos: set[int],
        per_row: bool,
        progress: Progress | None,
    ) -> None:
        self.prompt_len = prompt_len
        self.maxes = maxes
        self.mins = mins
        self.eos = eos
        self.per_row = per_row
        self.progress = progress
        self.alive = [True] * len(maxes)
        self.step_ns: list[int] = []
        self.step_generated: list[int] = []  # tokens generated after each step (speculation: several a step)

    def token_time(self, k: int) -> int:
        """When output token k (0-based) appeared: the first step that had generated it."""
        step = bisect.bisect_right(self.step_generated, k)
        return self.step_ns[min(step, len(self.step_ns) - 1)]

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        newest = input_ids[:, -1].tolist()  # waits for the device: the tokens exist now
        self.step_ns.append(time.monotonic_ns())
        before = self.step_generated[-1] if self.step_generated else 0
        self.step_generated.append(input_ids.shape[1] - self.prompt_len)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.per_row:
            return cast(torch.BoolTensor, done)
        generated = input_ids.shape[1] - self.prompt_len
        live = 0
        for row, token in enumerate(newest):
            if not self.alive[row]:
                continue
            if token in self.eos and generated > self.mins[row]:
                self.alive[row] = False
                continue
            live += 1
            if generated >= self.maxes[row]:
                self.alive[row] = False
                done[row] = True
        if self.progress and live:
            self.progress(live * max(1, generated - before))
        return cast(torch.BoolTensor, done)


class TransformersEngine(Engine):
    SPEC = _spec.SPEC  # name and SUPPORTS_* flags derive from it (engines/base.py)

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = torch.device("cpu")
        self._eos: tuple[int, ...] = ()
        self._pad = 0
        self._peak_rss = 0.0
        self._static = False
        self._compile = False
        self.num_parameters: int | None = None
        self._spec: Speculation | None = None
        self._assistant: Any = None  # the draft model of draft:MODEL:K
        self._pass_lengths: list[int] = []  # input length of each target forward (speculation only)
        self._spec_stats: dict[str, int] | None = None

    @classmethod
    def version(cls) -> str:
        return f"transformers {importlib.metadata.version('transformers')}, torch {torch.__version__}"

    # --- load -----------------------------------------------------------------------------------
    def _pick_device(self) -> torch.device:
        wanted = self.config.device
        if wanted == "auto":
            return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        if wanted.startswith("cuda"):
            if not torch.cuda.is_available():
                raise EngineError(
                    f"device {wanted} was asked for, but this torch ({torch.__version__}) sees no CUDA GPU",
                    fix="use --device cpu, or install a CUDA build of torch on a GPU box",
                )
            return torch.device("cuda:0" if wanted == "cuda" else wanted)
        return torch.device("cpu")

    def load(self) -> None:
        from wattlab.engines.models import ensure_files

        ensure_files(self.config)
        transformers.utils.logging.disable_progress_bar()  # no per-shard bars in the worker's log
        if self.config.variant not in DTYPES and not quantize.is_quantized(self.config.variant):
            raise EngineError(
                f"transformers cannot run variant {self.config.variant!r}",
                fix=f"use one of: {', '.join((*DTYPES, *quantize.QUANTIZED))}",
            )
        if "n_threads" in self.config.options:
            torch.set_num_threads(int(self.config.options["n_threads"]))
        self.device = self._pick_device()
        if self.device.type == "cuda":
            # Initialise CUDA on this device first: on torch 2.11 (the lent H100) resetting the peak
            # statistics of a device without a context fails with "Invalid device argument".
            torch.cuda.set_device(self.device)
            torch.cuda.init()
            torch.cuda.reset_peak_memory_stats(self.device)
        self.tokenizer = self._load_tokenizer()
        dtype = DTYPES[quantize.base_dtype(self.config.variant, self.device.type)]  # int8wo etc. start here
        extra = {}
        if "attn_implementation" in self.config.options:
            extra["attn_implementation"] = self.config.options["attn_implementation"]
        try:
            if self.config.fmt == "random":
                arch = AutoConfig.from_pretrained(self.config.path)
                with torch.device(self.device):  # initialise on the target device: no host copy
                    self.model = AutoModelForCausalLM.from_config(arch, dtype=dtype, **extra)
            else:
                self.model = AutoModelForCausalLM.from_pretrained(
                    self.config.path, dtype=dtype, device_map={"": self.device}, **extra
                )
        except Exception as exc:
            if _common.is_oom(exc):
                raise _common.oom_error(exc, f"loading {self.config.model}") from exc
            raise ModelError(
                f"transformers could not load {self.config.path}: {type(exc).__name__}: {exc}",
                fix="check that the directory is a complete checkpoint (config.json + weights)",
            ) from exc
        self.model.eval()
        quantize.apply(self.model, self.config.variant, self.device)  # weight-only variants (int8wo, nf4...)
        self._apply_transform()
        opts = self.config.options
        self._static = opts.get("cache_implementation") == "static"
        self._compile = bool(opts.get("torch_compile", False))
        if self._compile and not self._static:
            # Dynamic cache: compile the whole forward with dynamic shapes (prefill and decode alike).
            # With a static cache, transformers compiles the decode step itself (_generation_config).
            self.model.forward = torch.compile(self.model.forward, dynamic=True)
        self.num_parameters = quantize.parameter_count(self.model)  # packed 4-bit weights count unpacked
        eos = getattr(self.tokenizer, "eos_token_id", None)
        self._eos = (int(eos),) if eos is not None else ()
        pad = getattr(self.tokenizer, "pad_token_id", None)
        self._pad = int(pad) if pad is not None else (self._eos[0] if self._eos else 0)
        if self.config.speculative:
            self._setup_speculation(parse_speculative(self.config.speculative), dtype)
        self._peak_rss = _common.peak_rss_mib()

    def _setup_speculation(self, lever: Speculation, dtype: torch.dtype) -> None:
        """Count the target's verification passes; load the draft model of draft:MODEL:K."""
        self._spec = lever

        def count_pass(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                ids = kwargs["inputs_embeds"]
            self._pass_lengths.append(int(ids.shape[1]))

        self.model.register_forward_pre_hook(count_pass, with_kwargs=True)
        if lever.method != "draft":
            return
        from wattlab.engines.models import resolve

        assert lever.draft_model is not None
        draft = resolve(
            lever.draft_model,
            "transformers",
            self.config.variant,
            self.config.device,
            max_batch=1,
            max_tokens=self.config.max_tokens,
        )
        try:
            if draft.fmt == "random":
                with torch.device(self.device):
                    self._assistant = AutoModelForCausalLM.from_config(
                        AutoConfig.from_pretrained(draft.path), dtype=dtype
                    )
            else:
                self._assistant = AutoModelForCausalLM.from_pretrained(
                    draft.path, dtype=dtype, device_map={"": self.device}
                )
        except Exception as exc:
            raise ModelError(
                f"transformers could not load the draft model {draft.path}: {type(exc).__name__}: {exc}",
                fix="check the draft model, or use ngram:K",
            ) from exc
        self._assistant.eval()
        ours, theirs = int(self.model.config.vocab_size), int(self._assistant.config.vocab_size)
        if ours != theirs:  # the preflight refuses it first (sessions/speculation.py)
            raise ConfigError(
                f"the draft model {lever.draft_model} has {theirs} vocabulary ids, the target {ours}",
                fix="use a draft model of the target's vocabulary, or ngram:K",
            )
        # Exactly K drafts a step: no growing/shrinking schedule, no early stop on low confidence.
        gen = self._assistant.generation_config
        gen.num_assistant_tokens = lever.k
        gen.num_assistant_tokens_schedule = "constant"
        gen.assistant_confidence_threshold = 0.0

    def _apply_transform(self) -> None:
        """Load-time parts of a transform (engines/transforms.py): an unmerged LoRA adapter is
        attached (its low-rank path runs beside every projection), a 2:4-pruned checkpoint's weights
        become semi-structured sparse tensors (CUDA sm80+ only, as the preflight checks)."""
        opts = self.config.options
        if not opts.get("transform"):
            return
        import sys
        from pathlib import Path

        from wattlab.engines import transforms

        adapters = opts.get("lora_adapters")
        if adapters:
            self.model = transforms.attach_lora(self.model, Path(adapters[0]))
            self.model.eval()
        if opts["transform"] == "prune:2:4":
            if self.device.type != "cuda":
                raise EngineError(
                    "prune:2:4 needs semi-structured sparse kernels, which run on CUDA GPUs only",
                    fix="run it with --device cuda on an Ampere-or-later GPU",
                )
            converted, dense = transforms.apply_semi_structured(self.model)
            print(f"[transformers] 2:4: {converted} weights sparse, {dense} left dense", file=sys.stderr)

    def _load_tokenizer(self) -> Any:
        source = self.config.options.get("tokenizer", self.config.path)
        if source == "bytes":
            return ByteTokenizer()
        try:
            return AutoTokenizer.from_pretrained(source)
        except Exception as exc:
            raise ModelError(
                f"transformers could not load the tokenizer from {source}: {exc}",
                fix="the checkpoint needs tokenizer.json or tokenizer_config.json beside config.json",
            ) from exc

    # --- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return _common.encode(self.tokenizer, text)

    def detokenize(self, ids: list[int]) -> str:
        return _common.decode(self.tokenizer, ids)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self._eos

    # --- generation -----------------------------------------------------------------------------
    def generate(
        self, requests: list[Request], decoding: Decoding, batch_size: int, progress: Progress | None = None
    ) -> list[Completion]:
        self._check(decoding, batch_size, "batch_size")
        self._start_stats(batch_size)
        done = _common.new_completions(requests, time.monotonic_ns(), online=False)
        for start in range(0, len(requests), batch_size):
            chunk = list(range(start, min(start + batch_size, len(requests))))
            self._run_batch(requests, done, chunk, decoding, progress)
        return done

    def generate_online(
        self,
        requests: list[Request],
        decoding: Decoding,
        max_concurrency: int,
        progress: Progress | None = None,
    ) -> list[Completion]:
        self._check(decoding, max_concurrency, "max_concurrency")
        self._start_stats(max_concurrency)
        done = _common.new_completions(requests, time.monotonic_ns(), online=True)
        order = sorted(range(len(requests)), key=lambda i: (done[i].arrival_ns, i))
        while order:
            _common.sleep_until(done[order[0]].arrival_ns)
            now = time.monotonic_ns()
            arrived = [i for i in order[:max_concurrency] if done[i].arrival_ns <= now]
            order = order[len(arrived) :]
            self._run_batch(requests, done, arrived, decoding, progress)
        return done

    def _check(self, decoding: Decoding, width: int, what: str) -> None:
        _common.check_ready(self, self.model is not None, decoding, width, what)

    def _start_stats(self, width: int) -> None:
        """Zero the speculation counts of this generate call (refusing what assisted generation
        cannot do; the preflight refuses it first)."""
        if self._spec is None:
            return
        if width > 1:
            raise ConfigError(
                "transformers' assisted generation runs one sequence at a time", fix="use batch_size = 1"
            )
        names = ("draft_tokens", "accepted_tokens", "target_steps", "emitted_tokens")
        self._spec_stats = dict.fromkeys(names, 0)

    def speculation_stats(self) -> dict[str, int] | None:
        return dict(self._spec_stats) if self._spec_stats is not None else None

    def _run_batch(
        self,
        requests: list[Request],
        done: list[Completion],
        chunk: list[int],
        decoding: Decoding,
        progress: Progress | None,
    ) -> None:
        vocab = int(self.model.config.vocab_size)
        batch: list[int] = []
        for i in chunk:
            problem = _common.request_problem(requests[i], self.config.max_tokens, vocab)
            if problem:
                _common.fail(done[i], problem)
            else:
                batch.append(i)
        if not batch:
            return
        reqs = [requests[i] for i in batch]
        width = max(len(r.prompt_ids) for r in reqs)
        ids = torch.full((len(reqs), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for row, r in enumerate(reqs):  # left padding: every prompt ends at the same column
            ids[row, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[row, width - len(r.prompt_ids) :] = 1
        beam = decoding.strategy == "beam"
        mins = [r.min_new_tokens for r in reqs]
        maxes = [r.max_new_tokens for r in reqs]
        clock = _StepClock(width, maxes, mins, set(self._eos), not beam, progress)
        processors = LogitsProcessorList()
        if any(mins) and self._eos:
            processors.append(_BanEosUntil(width, mins, list(self._eos), decoding.num_beams if beam else 1))
        torch.manual_seed(decoding.seed)
        self._pass_lengths.clear()
        start = time.monotonic_ns()
        for i in batch:  # the batch's prefill starts now: its requests are scheduled together
            done[i].start_ns = done[i].scheduled_ns = start
        try:
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=self._generation_config(decoding, max(maxes)),
                    logits_processor=processors,
                    stopping_criteria=StoppingCriteriaList([clock]),
                    **({"assistant_model": self._assistant} if self._assistant is not None else {}),
                )
        except Exception as exc:
            if _common.is_oom(exc):
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                raise _common.oom_error(exc, f"generating a batch of {len(reqs)}") from exc
            raise EngineError(
                f"transformers generate failed: {type(exc).__name__}: {exc}",
                fix="check the decoding settings; run `wattlab doctor`",
            ) from exc
        end = time.monotonic_ns()
        if self._spec_stats is not None and self._pass_lengths:
            passes, generated = len(self._pass_lengths), int(out.shape[1]) - width
            stats = self._spec_stats
            stats["target_steps"] += passes
            stats["draft_tokens"] += sum(self._pass_lengths) - width - (passes - 1)
            stats["accepted_tokens"] += generated - passes
            stats["emitted_tokens"] += generated
        new = out[:, width:].tolist()
        for row, i in enumerate(batch):
            tokens, hit_eos = _common.trim_at_eos(new[row][: maxes[row]], set(self._eos), mins[row])
            completion = done[i]
            completion.output_ids = tokens
            completion.token_ns = [clock.token_time(k) for k in range(len(tokens))]
            completion.first_token_ns = completion.token_ns[0] if tokens else None
            if beam or not tokens:
                completion.end_ns = end
            elif hit_eos and len(tokens) < clock.step_generated[-1]:
                completion.end_ns = clock.token_time(len(tokens))  # the step that produced the EOS
            else:
                completion.end_ns = completion.token_ns[-1]
            completion.finish_reason = "stop" if hit_eos else "length"
            completion.text = self.detokenize(tokens)
        if beam and progress:
            progress(sum(done[i].output_tokens for i in batch))
        self._peak_rss = max(self._peak_rss, _common.peak_rss_mib())

    def _generation_config(self, decoding: Decoding, max_new_tokens: int) -> GenerationConfig:
        """Every choice explicit, so the checkpoint's generation_config.json changes nothing."""
        sample = decoding.strategy == "sample"
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=decoding.temperature if sample else None,
            top_p=decoding.top_p if sample else None,
            top_k=(decoding.top_k or None) if sample else None,
            num_beams=decoding.num_beams if decoding.strategy == "beam" else 1,
            **self._lookup_settings(),
            eos_token_id=list(self._eos) or None,
            pad_token_id=self._pad,
            use_cache=True,
            **self._cache_settings(),
        )

    def _lookup_settings(self) -> dict[str, Any]:
        """Prompt lookup (ngram:K): K drafted tokens a step, from n-grams of up to NGRAM_MAX tokens."""
        if self._spec is None or self._spec.method != "ngram":
            return {}
        return {"prompt_lookup_num_tokens": self._spec.k, "max_matching_ngram_size": NGRAM_MAX}

    def _cache_settings(self) -> dict[str, Any]:
        """The KV cache and compile settings of generate (cache_implementation, torch_compile).

        A static cache is sized for the load's longest sequence, so warmup and measured runs share
        one shape and the compiled decode step is not recompiled inside the measured window.
        Without torch_compile, transformers' own auto-compile of static caches is turned off, so the
        two levers stay separate."""
        if not self._static:
            return {"disable_compile": True} if not self._compile else {}
        from transformers import CompileConfig

        out: dict[str, Any] = {"cache_implementation": "static", "max_cache_len": self.config.max_tokens}
        if not self._compile:
            out["disable_compile"] = True
            return out
        compile_config = CompileConfig(mode="reduce-overhead" if self.device.type == "cuda" else "default")
        compile_config._compile_all_devices = True  # type: ignore[assignment]  # else accelerators only
        out["compile_config"] = compile_config
        return out

    # --- perplexity -----------------------------------------------------------------------------
    def prompt_logprobs(self, ids: list[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i >= 1 (natural log), from one forward pass."""
        if self.model is None:
            raise EngineError("the transformers engine is not loaded", fix="call load() first")
        if len(ids) < 2:
            return []
        try:
            with torch.inference_mode():
                logits = self.model(torch.tensor([ids], device=self.device)).logits[0, :-1]
                targets = torch.tensor(ids[1:], device=self.device)
                result: list[float] = []
                for start in range(0, logits.shape[0], 512):  # bound the fp32 copy's size
                    rows = logits[start : start + 512].float().log_softmax(dim=-1)
                    picked = rows.gather(1, targets[start : start + 512, None])[:, 0]
                    result.extend(picked.tolist())
        except Exception as exc:
            if _common.is_oom(exc):
                raise _common.oom_error(exc, f"scoring {len(ids)} tokens") from exc
            raise
        return result

    # --- bookkeeping ----------------------------------------------------------------------------
    def devices(self) -> list[str]:
        if self.device.type == "cuda":
            return [_common.gpu_device_id(self.device.index or 0)]
        return ["cpu"]

    def peak_memory_mib(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return self._peak_rss or None

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
