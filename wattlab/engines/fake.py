"""A fake inference engine: deterministic tokens and timings, and failures on demand.

Why: the runner, spool, commit and recovery paths need an engine to drive them, and a real one makes
every such test slow and tied to installed backends. FakeEngine is a real Engine subclass that the
worker subprocess hosts like any other, so those paths run anywhere in seconds. It is registered as
the hidden engine "fake" (no menu or help lists it) and takes any model name (`fake:<anything>`).

Tokens: a fixed vocabulary. Ids 0-2 are `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` (ChatML's markers,
id 2 the EOS), 3-258 one UTF-8 byte each, and 259 on one word each from WORDS (" energy"). Text is cut
into words; a word in WORDS is its id, anything else its bytes, so detokenize(tokenize(t)) == t.
Output tokens are words: greedy ones follow from the prompt alone (the same prompt gives the same
output at any batch size), sampled ones from the request's seed.

Timing (it really sleeps, so windows have durations): continuous batching like llama.cpp's. Each step
prefills the newly admitted prompts (prompt tokens / prefill_tok_s; each yields its first token), or
decodes `tokens_per_step` tokens for every busy sequence (tokens_per_step / tok_s), whichever is
pending, both in one step when both are. tok_s is per sequence, so a wider batch has more throughput.
Tokens are stamped with their step's scheduled end and the next step starts there, so timings are
exact even when a busy box wakes the process a little late; one that falls more than LATE_NS behind
restarts the schedule from now (a stamp is never later than the moment it is recorded).

Options (EngineConfig.options, checked in engines/options.py):
    tok_s = 200              decode tokens per second, per sequence
    prefill_tok_s = 2000     prompt tokens per second
    tokens_per_step = 1      tokens each sequence gets per step (engines that stream token batches)
    load_s = 0.05            how long load() takes
    eos_after = N            greedy/sampled outputs stop (EOS) after N tokens, min_new_tokens allowing
    fail = "crash" | "hang" | "oom" | "error" | "segv"
                             crash: the worker process dies (os._exit); segv: it really segfaults
                             (a NULL read, like a native library's bug); hang: it stops answering
                             (until the runner's timeout kills it); oom: raises OutOfMemory; error:
                             raises EngineError
    fail_after_tokens = N    fail once N output tokens were generated since load (default: at the
                             start of the first generate / logprobs call)
    fail_at = "generate" | "load"
"""

from __future__ import annotations

import math
import os
import random
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from wattlab import __version__
from wattlab.engines import _common
from wattlab.engines.base import Completion, Decoding, EngineConfig, Progress, Request, ServingEngine
from wattlab.engines.specs import fake as _spec
from wattlab.errors import ConfigError, EngineError, OutOfMemory

SPECIALS = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
EOS_ID = 2
BYTE_OFFSET = 3
WORDS = (
    "the", "energy", "of", "a", "token", "is", "measured", "in", "joules", "per", "watt", "second",
    "and", "model", "runs", "on", "power", "batch", "decode", "prefill", "latency", "carbon", "grid",
    "idle", "window", "counter", "sample", "run", "sweep", "engine", "meter", "green",
)  # fmt: skip
WORD_OFFSET = BYTE_OFFSET + 256
WORD_IDS = {" " + w: WORD_OFFSET + i for i, w in enumerate(WORDS)}
VOCAB_SIZE = WORD_OFFSET + len(WORDS)
FAILURES = ("crash", "hang", "oom", "error", "segv")
FAIL_POINTS = ("generate", "load")
LATE_NS = 50_000_000
CRASH_EXIT_CODE = 86  # what a `fail = "crash"` worker exits with (os._exit: no cleanup, like a segfault)
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
_PIECE = re.compile(r" [A-Za-z]+|.", re.S)


def tokenize(text: str) -> list[int]:
    """Ids of text: special markers parsed, known words as one id, everything else byte by byte."""
    ids: list[int] = []
    for part in _SPLIT.split(text):
        if part in SPECIALS:
            ids.append(SPECIALS[part])
            continue
        for piece in _PIECE.findall(part):
            word = WORD_IDS.get(piece)
            if word is not None:
                ids.append(word)
            else:
                ids.extend(BYTE_OFFSET + b for b in piece.encode("utf-8"))
    return ids


def detokenize(ids: list[int]) -> str:
    """Text of ids, special ids skipped (bytes are gathered first, so multi-byte characters join)."""
    out: list[str] = []
    pending = bytearray()
    for i in ids:
        if BYTE_OFFSET <= i < WORD_OFFSET:
            pending.append(i - BYTE_OFFSET)
            continue
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
        if WORD_OFFSET <= i < VOCAB_SIZE:
            out.append(" " + WORDS[i - WORD_OFFSET])
    if pending:
        out.append(pending.decode("utf-8", errors="replace"))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class FakeSettings:
    """The fake's options, checked: a bad value is refused at load, naming the option and the fix."""

    tok_s: float = 200.0
    prefill_tok_s: float = 2000.0
    tokens_per_step: int = 1
    load_s: float = 0.05
    eos_after: int | None = None
    fail: str | None = None
    fail_after_tokens: int | None = None
    fail_at: str = "generate"

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> FakeSettings:
        known = {k: v for k, v in options.items() if k in cls.__dataclass_fields__}
        settings = cls(**known)
        for name in ("tok_s", "prefill_tok_s"):
            value = getattr(settings, name)
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise ConfigError(
                    f"the fake engine's {name} must be a positive number, not {value!r}",
                    fix=f"e.g. options = {{{name} = 200}}",
                )
        if settings.tokens_per_step < 1:
            raise ConfigError(
                f"the fake engine's tokens_per_step must be at least 1, not {settings.tokens_per_step}",
                fix="e.g. options = {tokens_per_step = 4}",
            )
        if settings.load_s < 0:
            raise ConfigError(
                f"the fake engine's load_s is negative ({settings.load_s})", fix="use 0 or more"
            )
        for name in ("eos_after", "fail_after_tokens"):
            value = getattr(settings, name)
            if value is not None and value < 0:
                raise ConfigError(f"the fake engine's {name} is negative ({value})", fix="use 0 or more")
        if settings.fail is not None and settings.fail not in FAILURES:
            raise ConfigError(
                f"the fake engine has no failure {settings.fail!r}",
                fix=f"use fail = one of {', '.join(FAILURES)}",
            )
        if settings.fail_at not in FAIL_POINTS:
            raise ConfigError(
                f"the fake engine cannot fail at {settings.fail_at!r}",
                fix=f"use fail_at = one of {', '.join(FAIL_POINTS)}",
            )
        return settings


@dataclass(slots=True)
class _Seq:
    """One busy sequence."""

    index: int  # position of the request in the caller's list
    request: Request
    rng: random.Random | None  # None: greedy
    prefilled: bool = False
    ids: list[int] = field(default_factory=list)


class FakeEngine(ServingEngine):
    SPEC = _spec.SPEC  # name and SUPPORTS_* flags derive from it (engines/base.py)

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.settings = FakeSettings.from_options(config.options)
        self.num_parameters: int | None = None  # it has none: figures per parameter stay empty
        self._loaded = False
        self._generated = 0  # output tokens since load, for fail_after_tokens
        self._peak_rss = 0.0

    @classmethod
    def version(cls) -> str:
        return f"wattlab-fake {__version__}"

    def load(self) -> None:
        if self.settings.fail and self.settings.fail_at == "load":
            self._fail("loading")
        time.sleep(self.settings.load_s)
        self._loaded = True

    # --- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return tokenize(text)

    def detokenize(self, ids: list[int]) -> str:
        return detokenize(ids)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return (EOS_ID,)

    # --- failures -------------------------------------------------------------------------------
    def _maybe_fail(self, where: str) -> None:
        s = self.settings
        if not s.fail or s.fail_at != "generate":
            return
        if s.fail_after_tokens is None or self._generated >= s.fail_after_tokens:
            self._fail(where)

    def _fail(self, where: str) -> None:
        what = f"fail = {self.settings.fail!r} while {where}, after {self._generated} tokens"
        if self.settings.fail == "crash":
            print(f"fake engine: crashing on purpose ({what})", file=sys.stderr, flush=True)
            os._exit(CRASH_EXIT_CODE)
        if self.settings.fail == "segv":
            import ctypes

            print(f"fake engine: segfaulting on purpose ({what})", file=sys.stderr, flush=True)
            ctypes.string_at(0)  # a NULL read: SIGSEGV, no Python exception
        if self.settings.fail == "hang":
            print(f"fake engine: hanging on purpose ({what})", file=sys.stderr, flush=True)
            parent = os.getppid()
            while os.getppid() == parent:  # until killed, or orphaned (then nobody waits for us)
                time.sleep(0.2)
            os._exit(CRASH_EXIT_CODE)
        if self.settings.fail == "oom":
            raise OutOfMemory(f"out of memory while {where} (the fake engine's {what})", fix=_common.OOM_FIX)
        raise EngineError(
            f"the fake engine failed on purpose ({what})", fix="remove `fail` from the fake engine's options"
        )

    # --- generation -----------------------------------------------------------------------------
    def _serve(
        self, requests: list[Request], decoding: Decoding, width: int, online: bool, progress: Progress | None
    ) -> list[Completion]:
        _common.check_ready(
            self, self._loaded, decoding, width, "max_concurrency" if online else "batch_size"
        )
        self._maybe_fail("generating")
        t0 = time.monotonic_ns()
        done = _common.new_completions(requests, t0, online)
        waiting = sorted(range(len(requests)), key=lambda i: (done[i].arrival_ns, i))
        active: list[_Seq] = []
        clock = t0  # the schedule: steps end at absolute times, so sleeps don't drift
        while waiting or active:
            now = time.monotonic_ns()
            admitted = False
            while waiting and len(active) < width and (not online or done[waiting[0]].arrival_ns <= now):
                i = waiting.pop(0)
                problem = _common.request_problem(requests[i], self.config.max_tokens, VOCAB_SIZE)
                if problem:
                    _common.fail(done[i], problem)
                    continue
                sampled = decoding.strategy == "sample"
                rng = random.Random(_common.request_seed(decoding.seed, requests[i].id)) if sampled else None
                active.append(_Seq(i, requests[i], rng))
                done[i].start_ns = done[i].scheduled_ns = now  # the step that prefills it starts now
                admitted = True
            if not active:
                if waiting:  # online: idle until the next arrival
                    clock = done[waiting[0]].arrival_ns
                    _common.sleep_until(clock)
                continue
            # A step that admits a request starts now, so its first token never precedes its arrival.
            on_schedule = now - clock < LATE_NS and not admitted
            clock = self._step(active, clock if on_schedule else now)
            new_tokens = self._emit(active, done, clock)
            if progress and new_tokens:
                progress(new_tokens)
            if new_tokens:
                self._maybe_fail("generating")
        for completion in done:
            completion.text = detokenize(completion.output_ids)
        self._peak_rss = max(self._peak_rss, _common.peak_rss_mib())
        return done

    def _step(self, active: list[_Seq], start_ns: int) -> int:
        """Sleep for one step (prefill of new prompts and/or one decode step); returns its end time."""
        s = self.settings
        prompt_tokens = sum(len(q.request.prompt_ids) for q in active if not q.prefilled)
        decoding = any(q.prefilled for q in active)
        seconds = prompt_tokens / s.prefill_tok_s + (s.tokens_per_step / s.tok_s if decoding else 0.0)
        end = start_ns + int(seconds * 1e9)
        _common.sleep_until(end)
        return end

    def _emit(self, active: list[_Seq], done: list[Completion], t_ns: int) -> int:
        """Record this step's tokens (one time for all), finish sequences that are done."""
        new_tokens = 0
        for q in list(active):
            completion = done[q.index]
            n = 1 if not q.prefilled else self.settings.tokens_per_step
            q.prefilled = True
            ids: list[int] = []
            stop = False
            for _ in range(n):
                k = len(q.ids) + len(ids)
                if k >= q.request.max_new_tokens:
                    break
                eos_after = self.settings.eos_after
                if eos_after is not None and k >= max(eos_after, q.request.min_new_tokens):
                    stop = True  # the EOS itself is not an output token, as on the real engines
                    break
                ids.append(self._next_token(q, k))
            q.ids.extend(ids)
            completion.record_tokens(ids, t_ns)
            new_tokens += len(ids)
            if stop or len(q.ids) >= q.request.max_new_tokens:
                completion.finish_reason = "stop" if stop else "length"
                completion.end_ns = t_ns
                active.remove(q)
        self._generated += new_tokens
        return new_tokens

    def _next_token(self, q: _Seq, k: int) -> int:
        if q.rng is not None:
            return WORD_OFFSET + q.rng.randrange(len(WORDS))
        h = zlib.crc32(b",".join(str(t).encode() for t in q.request.prompt_ids))
        return WORD_OFFSET + (h + 7 * k) % len(WORDS)

    # --- perplexity -----------------------------------------------------------------------------
    def prompt_logprobs(self, ids: list[int]) -> list[float]:
        """A uniform model over the vocabulary: every log p is -log(VOCAB_SIZE), after a prefill's time."""
        if not self._loaded:
            raise EngineError("the fake engine is not loaded", fix="call load() first")
        self._maybe_fail("scoring a prompt")
        time.sleep(len(ids) / self.settings.prefill_tok_s)
        return [-math.log(VOCAB_SIZE)] * max(0, len(ids) - 1)

    # --- bookkeeping ----------------------------------------------------------------------------
    def devices(self) -> list[str]:
        return ["cpu"]

    def peak_memory_mib(self) -> float | None:
        return self._peak_rss or None

    def close(self) -> None:
        self._loaded = False
