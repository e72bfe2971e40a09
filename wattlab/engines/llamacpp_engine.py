"""llama.cpp adapter (llama-cpp-python's low-level API): GGUF files, real batching, per-token times.

Batching is llama.cpp's own: one context with `n_seq_max` = max_batch sequences, and each
`llama_decode` call carries one `llama_batch` holding the next token of every active sequence, plus
chunks of newly admitted prompts (prefill and decode mixed, as llama.cpp's server does; the prompt
part is bounded by `prefill_chunk` while others decode). Tokens go in ascending sequence id and a
new request takes the lowest free id, so llama.cpp runs a decode step as one ubatch (_fill_batch).
A finished sequence's KV cells are dropped and the next waiting request takes its slot, so offline
runs keep up to `batch_size` sequences busy and online runs admit a request the moment it arrives
and a slot is free (continuous batching). Beam search: not offered (llama.cpp has no batched beam
decoder).

Greedy tokens are one numpy argmax over llama.cpp's logits buffer for the whole step; sampled
tokens come from llama.cpp sampler chains (top-k -> top-p -> temperature -> seeded dist), one chain
per request. `min_new_tokens` is forced by banning every end-of-generation token until that many
tokens exist (greedy: -inf logits; sampling: a logit-bias sampler). Output ids exclude the EOS that
ended a request.

Speculation (`ngram:K`, greedy only): wattlab's own prompt lookup (engines/prompt_lookup.py). A
decoding sequence puts its next token and up to K drafted tokens into the same step, each asking
for logits; the greedy token of each row is compared with the next draft, the matching prefix and
the target's own token after it are kept, and the KV cells of the rejected drafts are dropped
(llama_memory_seq_rm). The output is the greedy output token for token; only the steps change.
"""

from __future__ import annotations

import collections
import ctypes
import heapq
import importlib.metadata
import os
import time
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as lc
import numpy as np

from wattlab.engines import _common
from wattlab.engines.base import Completion, Decoding, EngineConfig, Progress, Request, ServingEngine
from wattlab.engines.gguf_meta import read_metadata
from wattlab.engines.levers import parse_speculative
from wattlab.engines.llamacpp_log import clear_log, quiet_llama_logs, recent_log
from wattlab.engines.prompt_lookup import PromptLookup
from wattlab.engines.specs import llamacpp as _spec
from wattlab.errors import ConfigError, EngineError, ModelError, OutOfMemory

# KV-cache types offered as type_k / type_v (specs/llamacpp.py KV_TYPES), as ggml type ids.
_KV_TYPES = {"f16": lc.GGML_TYPE_F16, "q8_0": lc.GGML_TYPE_Q8_0, "q4_0": lc.GGML_TYPE_Q4_0}


@dataclass(slots=True)
class _Slot:
    """One busy sequence of the context."""

    seq: int
    index: int  # position of the request in the caller's list
    request: Request
    forced: Any  # sampler chain banning EOS (None when min_new_tokens is 0)
    free: Any  # sampler chain without the ban
    prompt_done: int = 0  # prompt tokens decoded so far
    pending_token: int | None = None  # sampled, not yet decoded
    n_past: int = 0
    generated: int = 0
    lookup: PromptLookup | None = None  # prompt + output tokens, for drafting (speculation only)
    drafts: list[int] = field(default_factory=list)  # drafted tokens in this step's batch


class LlamaCppEngine(ServingEngine):
    SPEC = _spec.SPEC  # name and SUPPORTS_* flags derive from it (engines/base.py)

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._batch_capacity = 0
        self._prefill_chunk = 512
        self._eog_ids: Any = None  # numpy array of the end-of-generation ids (greedy EOS ban)
        self._vocab: Any = None
        self._n_vocab = 0
        self._eog: set[int] = set()
        self._gpu_layers = 0
        self._main_gpu = 0
        self._peak_rss = 0.0
        self.num_parameters: int | None = None
        # ngram:K -> K draft tokens per step (0: no speculation); counts of the last generate call
        self._draft_k = 0
        self._spec_stats: dict[str, int] | None = None

    @classmethod
    def version(cls) -> str:
        return f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')}"

    # --- load -----------------------------------------------------------------------------------
    def load(self) -> None:
        from wattlab.engines.models import ensure_files

        ensure_files(self.config)
        read_metadata(self.config.path)  # a non-GGUF or cut header is a ModelError, before llama.cpp
        quiet_llama_logs()
        lc.llama_backend_init()
        opts = self.config.options
        self._gpu_layers = self._gpu_layer_count(opts.get("n_gpu_layers"))
        mparams = lc.llama_model_default_params()
        # -1 = every layer; llama.cpp wants a count, and clamps a large one to the model's.
        mparams.n_gpu_layers = 0x7FFFFFFF if self._gpu_layers < 0 else self._gpu_layers
        if self._gpu_layers:
            self._main_gpu = int(self.config.device.split(":")[1]) if ":" in self.config.device else 0
            mparams.main_gpu = self._main_gpu
            mparams.split_mode = lc.LLAMA_SPLIT_MODE_NONE  # one GPU, so its energy is the run's
        clear_log()
        self._model = lc.llama_model_load_from_file(self.config.path.encode(), mparams)
        if not self._model:
            raise self._load_error()
        self._vocab = lc.llama_model_get_vocab(self._model)
        self._n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        self._eog = {t for t in range(self._n_vocab) if lc.llama_vocab_is_eog(self._vocab, t)}
        self._eog_ids = np.array(sorted(self._eog), dtype=np.intp)
        self.num_parameters = int(lc.llama_model_n_params(self._model))

        n_seq = self.config.max_batch
        threads = int(opts.get("n_threads") or len(os.sched_getaffinity(0)))
        if self.config.speculative:
            lever = parse_speculative(self.config.speculative)
            if lever.method != "ngram":  # the preflight refuses it first (specs/llamacpp.py)
                self.close()
                raise ConfigError(
                    f"llama.cpp has no {lever.method} speculation", fix="use speculative = 'ngram:K'"
                )
            self._draft_k = lever.k
        # every decoding sequence may bring its token and K drafts to one step
        self._batch_capacity = max(int(opts.get("n_batch", 512)), n_seq * (1 + self._draft_k))
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_seq * self.config.max_tokens
        cparams.n_batch = self._batch_capacity
        cparams.n_ubatch = min(self._batch_capacity, int(opts.get("n_ubatch", 512)))
        # A prompt chunk rides along with the decode tokens of a step; bounding it bounds the stall
        # a newly admitted prompt puts on the running sequences (chunked prefill).
        self._prefill_chunk = int(opts.get("prefill_chunk", cparams.n_ubatch))
        cparams.n_seq_max = n_seq
        # Separate KV streams per sequence by default: prompts share no prefix in a benchmark, and a
        # unified cache makes every sequence attend over all cells (llama.cpp PR 14363).
        cparams.kv_unified = bool(opts.get("kv_unified", False))
        cparams.n_threads = threads
        # Batched decode and prompts are multi-token steps, which llama.cpp runs on n_threads_batch.
        cparams.n_threads_batch = int(opts.get("n_threads_batch") or threads)
        cparams.no_perf = False
        if "flash_attn" in opts:
            cparams.flash_attn_type = (
                lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if opts["flash_attn"] else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
            )
        cparams.type_k = _KV_TYPES[opts.get("type_k", "f16")]
        cparams.type_v = _KV_TYPES[opts.get("type_v", "f16")]
        if opts.get("type_v", "f16") != "f16" and opts.get("flash_attn") is False:
            self.close()
            raise ConfigError(
                f"type_v = {opts['type_v']!r} needs flash attention, and flash_attn is false",
                fix="set flash_attn = true (or leave it unset), or type_v = 'f16'",
            )
        self._ctx = lc.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            reason = recent_log()
            self.close()
            if "memory" in reason.lower() or "alloc" in reason.lower():
                raise OutOfMemory(
                    f"llama.cpp could not allocate a context of {cparams.n_ctx} tokens: {reason}",
                    fix="lower --batch-size or the token lengths, or n_gpu_layers",
                )
            raise EngineError(f"llama.cpp could not create a context: {reason}", fix=_common.OOM_FIX)
        if opts.get("lora_adapters"):  # transform lora:R unmerged (engines/transforms_gguf.py)
            self._attach_lora(list(opts["lora_adapters"]))
        self._batch = lc.llama_batch_init(self._batch_capacity, 0, 1)
        self._peak_rss = _common.peak_rss_mib()

    def _attach_lora(self, paths: list[str]) -> None:
        """Load the GGUF LoRA adapter and apply it to the context at scale 1 (llama.cpp then scales
        B A by the file's alpha / rank, written to match PEFT's). llama.cpp frees it with the model."""
        if len(paths) != 1:
            self.close()
            raise ConfigError(
                f"llama.cpp serves one LoRA adapter per run here, {len(paths)} were given",
                fix="use lora:R (one adapter) on llamacpp; lora:R:xN runs on vllm",
            )
        clear_log()
        adapter = lc.llama_adapter_lora_init(self._model, paths[0].encode())
        status = -1
        if adapter:
            adapters = (lc.llama_adapter_lora_p_ctypes * 1)(adapter)
            status = lc.llama_set_adapters_lora(self._ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
        if status != 0:
            reason = recent_log() or "no reason given"
            self.close()
            raise ModelError(
                f"llama.cpp could not apply the LoRA adapter {paths[0]}: {reason}",
                fix="delete that adapter file so it is written again for this base model",
            )

    def _gpu_layer_count(self, requested: int | None) -> int:
        device = self.config.device
        if device == "cpu":
            return 0
        supported = bool(lc.llama_supports_gpu_offload())
        if device.startswith("cuda") and not supported:
            raise EngineError(
                "this llama-cpp-python build cannot use the GPU (it was built without CUDA)",
                fix="reinstall it with CMAKE_ARGS='-DGGML_CUDA=on' pip install --force-reinstall "
                "--no-cache-dir llama-cpp-python, or use --device cpu",
            )
        if requested is not None:
            return int(requested) if supported else 0
        return -1 if supported else 0  # -1: every layer

    def _load_error(self) -> ModelError | OutOfMemory:
        reason = recent_log() or "no reason given"
        lowered = reason.lower()
        if "unknown model architecture" in lowered:
            fix = "this llama.cpp is too old for the model: pip install -U llama-cpp-python"
        elif "out of memory" in lowered or "failed to allocate" in lowered:
            return OutOfMemory(f"out of memory loading {self.config.path}: {reason}", fix=_common.OOM_FIX)
        else:
            fix = "the file is truncated or corrupt: download or copy it again (or delete it and re-derive)"
        return ModelError(f"llama.cpp could not load {self.config.path}: {reason}", fix=fix)

    # --- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 8
        for _ in range(2):
            buf = (lc.llama_token * size)()
            n = lc.llama_tokenize(self._vocab, data, len(data), buf, size, False, True)
            if n >= 0:
                return list(buf[:n])
            size = -n
        raise EngineError("llama.cpp could not tokenize the text", fix="check the text is valid UTF-8")

    def detokenize(self, ids: list[int]) -> str:
        if not ids:
            return ""
        arr = (lc.llama_token * len(ids))(*ids)
        size = len(ids) * 16 + 16
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = lc.llama_detokenize(self._vocab, arr, len(ids), buf, size, True, False)
            if n >= 0:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = -n
        raise EngineError("llama.cpp could not detokenize", fix="report this with the token ids")

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._eog))

    # --- generation -----------------------------------------------------------------------------
    def _sampler(self, decoding: Decoding, seed: int, ban_eog: bool) -> Any:
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if ban_eog:
            bans = (lc.llama_logit_bias * len(self._eog))(
                *[lc.llama_logit_bias(t, float("-inf")) for t in sorted(self._eog)]
            )
            lc.llama_sampler_chain_add(
                chain, lc.llama_sampler_init_logit_bias(self._n_vocab, len(bans), bans)
            )
        if decoding.strategy == "greedy":
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
            return chain
        if decoding.top_k > 0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(decoding.top_k))
        if decoding.top_p < 1.0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(decoding.top_p, 1))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(decoding.temperature))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed))
        return chain

    def _add(self, n: int, token: int, pos: int, seq: int, want_logits: bool) -> None:
        b = self._batch
        b.token[n] = token
        b.pos[n] = pos
        b.n_seq_id[n] = 1
        b.seq_id[n][0] = seq
        b.logits[n] = want_logits

    def _release(self, slot: _Slot) -> None:
        lc.llama_memory_seq_rm(lc.llama_get_memory(self._ctx), slot.seq, -1, -1)
        for chain in (slot.forced, slot.free):
            if chain:
                lc.llama_sampler_free(chain)

    def _serve(
        self,
        requests: list[Request],
        decoding: Decoding,
        width: int,
        online: bool,
        progress: Progress | None,
    ) -> list[Completion]:
        _common.check_ready(
            self, self._ctx is not None, decoding, width, "max_concurrency" if online else "batch_size"
        )
        t0 = time.monotonic_ns()
        done = _common.new_completions(requests, t0, online)
        waiting = collections.deque(sorted(range(len(requests)), key=lambda i: (done[i].arrival_ns, i)))
        # A min-heap: a new request takes the lowest free sequence id, keeping the busy ids
        # consecutive (see _fill_batch).
        free_seqs = list(range(width))
        active: dict[int, _Slot] = {}
        n_ctx_seq = lc.llama_n_ctx_seq(self._ctx)
        lc.llama_memory_clear(lc.llama_get_memory(self._ctx), True)
        if self._draft_k and decoding.strategy != "greedy":  # the preflight refuses it first
            raise ConfigError(
                "llama.cpp speculation verifies drafts against the greedy token only",
                fix="use decoding = 'greedy', or drop speculative",
            )
        self._spec_stats = (
            dict.fromkeys(("draft_tokens", "accepted_tokens", "target_steps", "emitted_tokens"), 0)
            if self._draft_k
            else None
        )
        try:
            while waiting or active:
                self._admit(requests, decoding, done, waiting, free_seqs, active, online, n_ctx_seq)
                if not active:
                    if waiting:  # online: idle until the next arrival
                        _common.sleep_until(done[waiting[0]].arrival_ns)
                    continue
                outputs = self._fill_batch(active)
                t_decode = time.monotonic_ns()
                for slot in active.values():  # scheduled: the first decode holding its prompt starts
                    if slot.prompt_done and done[slot.index].scheduled_ns is None:
                        done[slot.index].scheduled_ns = t_decode
                status = lc.llama_decode(self._ctx, self._batch)
                if status != 0:
                    self._decode_failed(status, active, done, free_seqs)
                    continue
                if self._draft_k:
                    new_tokens = self._verify(outputs, done, active, free_seqs)
                else:
                    new_tokens = self._sample(outputs, done, active, free_seqs)
                if progress and new_tokens:
                    progress(new_tokens)
        finally:
            for slot in active.values():
                self._release(slot)
        for completion in done:
            completion.text = self.detokenize(completion.output_ids)
        self._peak_rss = max(self._peak_rss, _common.peak_rss_mib())
        return done

    def _admit(
        self,
        requests: list[Request],
        decoding: Decoding,
        done: list[Completion],
        waiting: collections.deque[int],
        free_seqs: list[int],
        active: dict[int, _Slot],
        online: bool,
        n_ctx_seq: int,
    ) -> None:
        now = time.monotonic_ns()
        while waiting and free_seqs and (not online or done[waiting[0]].arrival_ns <= now):
            i = waiting.popleft()
            request = requests[i]
            problem = _common.request_problem(request, n_ctx_seq, self._n_vocab)
            if problem:
                _common.fail(done[i], problem)
                continue
            seq = heapq.heappop(free_seqs)
            if decoding.strategy == "greedy":  # argmax in numpy over all rows at once (_sample)
                active[seq] = _Slot(seq, i, request, None, None)
                if self._draft_k:
                    active[seq].lookup = PromptLookup(request.prompt_ids)
            else:
                seed = _common.request_seed(decoding.seed, request.id)
                ban = request.min_new_tokens > 0
                forced = self._sampler(decoding, seed, ban_eog=True) if ban else None
                active[seq] = _Slot(seq, i, request, forced, self._sampler(decoding, seed, ban_eog=False))
            done[i].start_ns = time.monotonic_ns()

    def _fill_batch(self, active: dict[int, _Slot]) -> list[tuple[int, _Slot]]:
        """Put every decoding sequence's next token and the prompt chunks into the batch.

        Returns (batch position, slot) for each position whose logits choose a new token, in
        increasing position (llama.cpp returns their logits rows in that order).
        """
        n = 0
        outputs: list[tuple[int, _Slot]] = []
        slots = [active[seq] for seq in sorted(active)]
        for slot in slots:
            slot.drafts = self._drafts(slot) if slot.pending_token is not None else []
        decoding = sum(1 + len(slot.drafts) for slot in slots if slot.pending_token is not None)
        # Sequences already decoding wait for this step's prompt tokens: with any of them in the
        # batch, prompts get at most prefill_chunk tokens (llama.cpp server's chunked prefill).
        budget = self._batch_capacity - decoding
        if decoding:
            budget = min(budget, self._prefill_chunk)
        # In ascending sequence id, each sequence's tokens together. With a KV stream per sequence,
        # llama.cpp splits a batch into ubatches of *consecutive increasing* sequence ids, in batch
        # order (llama_batch_allocr::split_equal, sequential = !kv_unified), and each ubatch is one
        # pass over all the weights. Taken in slot order (slots are reused as requests finish), a
        # step of B decode tokens became up to B passes, so batch B cost B single steps.
        for slot in slots:
            if slot.pending_token is not None:
                self._add(n, slot.pending_token, slot.n_past, slot.seq, True)
                outputs.append((n, slot))
                slot.n_past += 1
                slot.pending_token = None
                n += 1
                for j, token in enumerate(slot.drafts):  # verified in this same pass (_verify)
                    self._add(n, token, slot.n_past + j, slot.seq, True)
                    n += 1
                continue
            prompt = slot.request.prompt_ids
            while slot.prompt_done < len(prompt) and budget > 0:
                last = slot.prompt_done == len(prompt) - 1
                self._add(n, prompt[slot.prompt_done], slot.prompt_done, slot.seq, last)
                if last:
                    outputs.append((n, slot))
                slot.prompt_done += 1
                slot.n_past = slot.prompt_done
                n += 1
                budget -= 1
        self._batch.n_tokens = n
        return outputs

    def _sample(
        self,
        outputs: list[tuple[int, _Slot]],
        done: list[Completion],
        active: dict[int, _Slot],
        free_seqs: list[int],
    ) -> int:
        if outputs and outputs[0][1].free is None:
            chosen = self._greedy(outputs)
        else:
            chosen = []
            for pos, slot in outputs:
                use_forced = slot.forced is not None and slot.generated < slot.request.min_new_tokens
                token = lc.llama_sampler_sample(slot.forced if use_forced else slot.free, self._ctx, pos)
                chosen.append((slot, token))
        t = time.monotonic_ns()  # the step's tokens are all known now
        new_tokens = 0
        for slot, token in chosen:
            completion = done[slot.index]
            kept, finished = self._take(slot, [token], completion)
            completion.record_tokens(kept, t)
            new_tokens += len(kept)
            if finished:
                self._retire(slot, completion, t, active, free_seqs)
            else:
                slot.pending_token = token
        return new_tokens

    def _take(self, slot: _Slot, tokens: list[int], completion: Completion) -> tuple[list[int], bool]:
        """Count `tokens` as the slot's next outputs, in order, up to an end-of-generation token
        (counted, not kept) or max_new_tokens. Returns the tokens kept and whether it finished."""
        kept: list[int] = []
        for token in tokens:
            slot.generated += 1
            if token in self._eog:
                completion.finish_reason = "stop"
                return kept, True
            kept.append(token)
            if slot.generated >= slot.request.max_new_tokens:
                completion.finish_reason = "length"
                return kept, True
        return kept, False

    def _retire(
        self, slot: _Slot, completion: Completion, t: int, active: dict[int, _Slot], free_seqs: list[int]
    ) -> None:
        """A finished request: stamp its end, drop its KV cells and give its sequence id back."""
        completion.end_ns = t
        self._release(slot)
        del active[slot.seq]
        heapq.heappush(free_seqs, slot.seq)

    def _drafts(self, slot: _Slot) -> list[int]:
        """Up to K tokens drafted by prompt lookup, never past the request's max_new_tokens (the
        pending token and the target's own token after the drafts count too)."""
        if slot.lookup is None:
            return []
        room = slot.request.max_new_tokens - slot.generated - 1
        return slot.lookup.draft(min(self._draft_k, room))

    def _verify(
        self,
        outputs: list[tuple[int, _Slot]],
        done: list[Completion],
        active: dict[int, _Slot],
        free_seqs: list[int],
    ) -> int:
        """Greedy tokens of a speculative step: each sequence keeps its drafts up to the first one
        the target model disagrees with, plus the target's own token there; the rejected drafts'
        KV cells are removed. Returns the new output tokens."""
        n_rows = sum(1 + len(slot.drafts) for _, slot in outputs)
        logits = np.ctypeslib.as_array(lc.llama_get_logits(self._ctx), shape=(n_rows, self._n_vocab))
        # row r of a sequence chooses its output token number generated + r: ban EOS below min_new_tokens
        banned: list[int] = []
        row = 0
        for _, slot in outputs:
            for r in range(1 + len(slot.drafts)):
                if slot.generated + r < slot.request.min_new_tokens:
                    banned.append(row + r)
            row += 1 + len(slot.drafts)
        if banned and len(self._eog_ids):
            logits[np.ix_(banned, self._eog_ids)] = -np.inf
        greedy = logits.argmax(axis=1).tolist()
        t = time.monotonic_ns()
        stats = self._spec_stats
        assert stats is not None
        memory = lc.llama_get_memory(self._ctx)
        new_tokens = 0
        row = 0
        for _, slot in outputs:
            drafts = slot.drafts
            chosen = greedy[row : row + 1 + len(drafts)]
            row += 1 + len(drafts)
            matched = 0
            while matched < len(drafts) and chosen[matched] == drafts[matched]:
                matched += 1
            emitted = chosen[: matched + 1]
            completion = done[slot.index]
            kept, finished = self._take(slot, emitted, completion)
            consumed = len(kept) + (1 if finished and completion.finish_reason == "stop" else 0)
            stats["draft_tokens"] += len(drafts)
            stats["accepted_tokens"] += min(matched, consumed)
            stats["target_steps"] += 1
            stats["emitted_tokens"] += consumed
            completion.record_tokens(kept, t)
            new_tokens += len(kept)
            if finished:
                self._retire(slot, completion, t, active, free_seqs)
                continue
            # the accepted drafts' cells stay (they hold the right tokens); the rejected ones go
            slot.n_past += matched
            if matched < len(drafts):
                lc.llama_memory_seq_rm(memory, slot.seq, slot.n_past, -1)
            slot.pending_token = emitted[-1]
            if slot.lookup is not None:
                slot.lookup.extend(kept)
        return new_tokens

    def speculation_stats(self) -> dict[str, int] | None:
        return dict(self._spec_stats) if self._spec_stats is not None else None

    def _greedy(self, outputs: list[tuple[int, _Slot]]) -> list[tuple[_Slot, int]]:
        """Greedy tokens of every output row at once: one numpy argmax over llama.cpp's logits
        buffer (no copy), instead of one sampler call per sequence that copies 49k candidates.

        The batch asks logits for positions in increasing order, so row j is outputs[j]. Rows still
        under min_new_tokens get -inf on the end-of-generation ids (in llama.cpp's buffer, which
        the next decode overwrites). Ties go to the lowest id, as llama.cpp's greedy sampler does.
        """
        logits = np.ctypeslib.as_array(lc.llama_get_logits(self._ctx), shape=(len(outputs), self._n_vocab))
        banned = [j for j, (_, slot) in enumerate(outputs) if slot.generated < slot.request.min_new_tokens]
        if banned and len(self._eog_ids):
            logits[np.ix_(banned, self._eog_ids)] = -np.inf
        tokens = logits.argmax(axis=1).tolist()
        return [(slot, int(token)) for (_, slot), token in zip(outputs, tokens, strict=True)]

    def _decode_failed(
        self, status: int, active: dict[int, _Slot], done: list[Completion], free_seqs: list[int]
    ) -> None:
        """Fail the requests in flight (the KV cache is full or the decode broke) and go on."""
        if status == 1:
            message = "llama.cpp found no KV-cache room for this batch (status 1)"
        else:
            message = f"llama_decode failed with status {status}: {recent_log(3)}"
        if status < 0 and "memory" in message.lower():
            raise OutOfMemory(message, fix=_common.OOM_FIX)
        for slot in list(active.values()):
            _common.fail(done[slot.index], message)
            self._release(slot)
            del active[slot.seq]
            heapq.heappush(free_seqs, slot.seq)

    # --- perplexity -----------------------------------------------------------------------------
    def prompt_logprobs(self, ids: list[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i >= 1, natural log, from llama.cpp's logits (sequence 0)."""
        if self._ctx is None:
            raise EngineError("the llamacpp engine is not loaded", fix="call load() first")
        n_ctx_seq = lc.llama_n_ctx_seq(self._ctx)
        if len(ids) > n_ctx_seq:
            raise EngineError(
                f"the text is {len(ids)} tokens, more than the context's {n_ctx_seq} per sequence",
                fix="load the engine with a larger max_tokens, or split the text",
            )
        memory = lc.llama_get_memory(self._ctx)
        lc.llama_memory_clear(memory, True)
        result: list[float] = []
        try:
            for start in range(0, len(ids), self._batch_capacity):
                chunk = ids[start : start + self._batch_capacity]
                for j, token in enumerate(chunk):
                    self._add(j, token, start + j, 0, True)
                self._batch.n_tokens = len(chunk)
                status = lc.llama_decode(self._ctx, self._batch)
                if status != 0:
                    raise EngineError(f"llama_decode failed with status {status}", fix=_common.OOM_FIX)
                logits = np.ctypeslib.as_array(
                    lc.llama_get_logits(self._ctx), shape=(len(chunk), self._n_vocab)
                )
                logits = logits.astype(np.float64)
                peak = logits.max(axis=1, keepdims=True)
                log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
                for j in range(len(chunk)):
                    target = start + j + 1
                    if target < len(ids):
                        result.append(float(logits[j, ids[target]] - log_norm[j]))
        finally:
            lc.llama_memory_clear(memory, True)
        return result

    # --- bookkeeping ----------------------------------------------------------------------------
    def devices(self) -> list[str]:
        return [_common.gpu_device_id(self._main_gpu)] if self._gpu_layers else ["cpu"]

    def peak_memory_mib(self) -> float | None:
        return self._peak_rss or None

    def close(self) -> None:
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            lc.llama_free(self._ctx)
        self._ctx = None
        if self._model:
            lc.llama_model_free(self._model)
        self._model = None
