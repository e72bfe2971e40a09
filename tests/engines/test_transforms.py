"""Model transforms (engines/transforms.py): pruning and LoRA on Hugging Face checkpoints.

The fast tests build a tiny random Llama (4 layers, hidden 64, MLP 256, a word-level tokenizer over
wattlab's perplexity text) in a temporary directory and check what each transform does to it:
sparsity, shapes, parameter counts, which layers Block Influence drops, that LoRA adapters are
seeded and non-zero and that merging them gives the unmerged model's outputs, caching and
determinism; then the preflight's refusals. The slow test runs `wattlab run --transform` with the
perplexity task on the bundled model through the transformers engine: perplexity rises with
magnitude pruning and with depth pruning, more with more layers dropped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wattlab.engines import models, transforms
from wattlab.engines.levers import Transform, parse_transform
from wattlab.errors import ConfigError
from wattlab.sessions.spec import RunSpec
from wattlab.sessions.store import Store

LAYERS, HIDDEN, MLP = 4, 64, 256


def _tiny_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(re.findall(r"\w+|[^\w\s]", transforms.calibration_text())))
    vocab = {"[UNK]": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>").save_pretrained(
        str(out)
    )


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model's matrices are too small to share out: one thread, restored after. (With two
    on a loaded 2-core box, OpenMP's waits made each forward ~100x slower.)"""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Llama checkpoint (fp32) with a word-level tokenizer."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    base = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    _tiny_tokenizer(base)
    vocab = len(AutoTokenizer.from_pretrained(str(base)))
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(base))
    return base


def _tensors(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for path in sorted(directory.glob("*.safetensors")):
        out.update(load_file(str(path)))
    return out


def _decoder_weights(tensors: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tensors.items() if ".layers." in k and k.endswith("proj.weight")}


def _note(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "wattlab-source.json").read_text())


def _logits(directory: Path, text: str = "The river carries sand and stones downstream.") -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    ids = AutoTokenizer.from_pretrained(str(directory))(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_transform_text_is_the_canonical_spelling() -> None:
    for text in ("prune:magnitude:0.5", "prune:2:4", "prune:layers:3", "prune:mlp:0.25", "lora:8"):
        assert transforms.transform_text(parse_transform(text)) == text
    assert transforms.transform_text(parse_transform("lora:16:merged")) == "lora:16:merged"
    assert transforms.transform_text(parse_transform("lora:16:x4")) == "lora:16:x4"


def test_magnitude_pruning_zeroes_exactly_the_fraction_of_decoder_linears(tiny: Path) -> None:
    out = transforms.transformed_checkpoint(tiny, Transform("magnitude", 0.5))
    before, after = _tensors(tiny), _tensors(out)
    weights = _decoder_weights(after)
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(0.5 * total)
    # the smallest magnitudes went: every survivor is at least as large as every pruned weight was
    pruned = [before[k][w == 0].abs().max() for k, w in weights.items() if (w == 0).any()]
    kept = [w[w != 0].abs().min() for w in weights.values()]
    assert max(pruned) <= min(kept)
    # embeddings, lm_head and norms are untouched; stored dense, the same shapes
    for key in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert bool((before[key] == after[key]).all())
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}
    note = _note(out)
    assert note["sparsity_achieved"] == pytest.approx(0.5, abs=1e-9)
    assert "embeddings" in note["scope"]


def test_two_four_keeps_two_of_every_four_inputs(tiny: Path) -> None:
    out = transforms.transformed_checkpoint(tiny, Transform("2:4"))
    before = _tensors(tiny)
    for key, weight in _decoder_weights(_tensors(out)).items():
        groups = weight.reshape(weight.shape[0], -1, 4)
        assert bool(((groups != 0).sum(-1) <= 2).all()), key
        # the kept ones are the group's two largest magnitudes
        original = before[key].reshape(weight.shape[0], -1, 4).abs()
        kept_min = original.masked_fill(groups == 0, float("inf")).min(-1).values
        dropped_max = original.masked_fill(groups != 0, 0).max(-1).values
        assert bool((dropped_max <= kept_min).all()), key
    assert _note(out)["sparsity_achieved"] == pytest.approx(0.5, abs=1e-3)


def test_layer_pruning_drops_the_lowest_block_influence_layers(tiny: Path) -> None:
    out = transforms.transformed_checkpoint(tiny, Transform("layers", 2))
    note = _note(out)
    scores = note["block_influence"]
    assert len(scores) == LAYERS and all(isinstance(s, float) for s in scores)
    assert note["layers_dropped"] == sorted(sorted(range(LAYERS), key=lambda i: (scores[i], i))[:2])
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == LAYERS - 2
    before, after = _tensors(tiny), _tensors(out)
    per_layer = sum(v.numel() for k, v in before.items() if k.startswith("model.layers.0."))
    assert sum(v.numel() for v in before.values()) - sum(v.numel() for v in after.values()) == 2 * per_layer
    # the kept layers are the originals, renumbered in order
    kept = [i for i in range(LAYERS) if i not in note["layers_dropped"]]
    for new, old in enumerate(kept):
        a, b = (
            after[f"model.layers.{new}.mlp.down_proj.weight"],
            before[f"model.layers.{old}.mlp.down_proj.weight"],
        )
        assert bool((a == b).all())
    assert _logits(out).shape[-1] == config["vocab_size"]  # it loads and runs


def test_layer_pruning_refuses_to_drop_every_layer(tiny: Path) -> None:
    with pytest.raises(ConfigError, match="has 4 decoder layers"):
        transforms.transformed_checkpoint(tiny, Transform("layers", LAYERS))


def test_mlp_pruning_makes_a_narrower_checkpoint_removing_the_lowest_scored_channels(tiny: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = transforms.transformed_checkpoint(tiny, Transform("mlp", 0.25))
    keep = transforms.mlp_channels_kept(MLP, 0.25)
    assert keep == 192
    config = json.loads((out / "config.json").read_text())
    assert config["intermediate_size"] == keep
    before, after = _tensors(tiny), _tensors(out)
    removed = LAYERS * 3 * HIDDEN * (MLP - keep)
    assert _note(out)["parameters_before"] - _note(out)["parameters_after"] == removed
    # the channels kept are each layer's top scores, in their order
    model = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32).eval()
    chunks = transforms.calibration_chunks(AutoTokenizer.from_pretrained(str(tiny)))
    scores = transforms.mlp_channel_scores(model, chunks)
    for i, score in enumerate(scores):
        p = f"model.layers.{i}.mlp."
        chosen = score.topk(keep).indices.sort().values
        assert after[p + "gate_proj.weight"].shape == (keep, HIDDEN)
        assert bool((after[p + "up_proj.weight"] == before[p + "up_proj.weight"][chosen]).all())
        assert bool((after[p + "down_proj.weight"] == before[p + "down_proj.weight"][:, chosen]).all())
        # removing a channel is exactly zeroing its down_proj column in the original
        dropped = torch.ones(MLP, dtype=torch.bool)
        dropped[chosen] = False
        with torch.no_grad():
            model.model.layers[i].mlp.down_proj.weight[:, dropped] = 0
    text = "The greenhouse was built in the spring."
    ids = AutoTokenizer.from_pretrained(str(tiny))(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    assert torch.allclose(_logits(out, text), expected, atol=1e-5)


def test_lora_adapter_is_seeded_non_zero_and_changes_the_outputs(tiny: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = transforms.lora_adapter_dir(tiny, Transform("lora", 4))
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and sorted(config["target_modules"]) == sorted(transforms.LORA_TARGETS)
    tensors = _tensors(adapter)
    assert len(tensors) == LAYERS * len(transforms.LORA_TARGETS) * 2
    assert all(bool(t.abs().sum() > 0) for t in tensors.values())  # B too: not a no-op
    # the same seed gives the same adapter in another models dir; another seed (xN) another one
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WATTLAB_MODELS", str(tmp_path))
        again = transforms.lora_adapter_dir(tiny, Transform("lora", 4))
    assert again != adapter
    assert all(bool((t == _tensors(again)[k]).all()) for k, t in tensors.items())
    second = transforms.lora_adapter_dirs(tiny, Transform("lora", 4, adapters=2))
    assert second[0] == adapter and second[1] != adapter
    key = next(k for k in tensors if "lora_B" in k)
    assert not bool((_tensors(second[1])[key] == tensors[key]).all())
    base = AutoModelForCausalLM.from_pretrained(str(tiny)).eval()
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny)), str(adapter)).eval()
    ids = __import__("torch").tensor([[5, 6, 7, 8, 9]])
    delta = (peft(input_ids=ids).logits - base(input_ids=ids).logits).abs().max().detach()
    assert 0 < float(delta) < 1.0


def test_merged_lora_equals_the_unmerged_adapter(tiny: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = transforms.transformed_checkpoint(tiny, Transform("lora", 4, merged=True))
    adapter = transforms.lora_adapter_dir(tiny, Transform("lora", 4))
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny)), str(adapter)).eval()
    text = "The river carries sand and stones downstream."
    ids = __import__("transformers").AutoTokenizer.from_pretrained(str(tiny))(text, return_tensors="pt")
    with torch.no_grad():
        expected = peft(input_ids=ids["input_ids"]).logits
    assert torch.allclose(_logits(merged, text), expected, atol=1e-4)
    assert _note(merged)["adapter"] == str(adapter)


def test_a_transform_is_built_once_and_cached(tiny: Path) -> None:
    first = transforms.transformed_checkpoint(tiny, Transform("magnitude", 0.3))
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert transforms.transformed_checkpoint(tiny, Transform("magnitude", 0.3)) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert transforms.transformed_checkpoint_path(tiny, Transform("magnitude", 0.4)) != first
    # unmerged LoRA changes no weights: its checkpoint is the base
    assert transforms.transformed_checkpoint(tiny, Transform("lora", 4)) == tiny


def test_resolve_points_the_engine_at_the_transformed_files(tiny: Path) -> None:
    cfg = models.resolve(str(tiny), "transformers", "fp32", "cpu", transform="prune:mlp:0.25", prepare=False)
    assert cfg.path == str(transforms.transformed_checkpoint_path(tiny, Transform("mlp", 0.25)))
    assert cfg.options["tokenizer"] == str(tiny) and cfg.options["transform"] == "prune:mlp:0.25"
    assert models.files_ready(cfg)  # built by the test above
    lora = models.resolve(str(tiny), "transformers", "fp32", "cpu", transform="lora:4", prepare=False)
    assert lora.path == str(tiny)
    assert lora.options["lora_adapters"] == [
        str(p) for p in transforms.lora_adapter_paths(tiny, Transform("lora", 4))
    ]
    note = transforms.run_note(cfg)
    assert note is not None and note["mlp_width_after"] == 192


# --- preflight ---------------------------------------------------------------------------------------


def _problems(**fields: Any) -> list[str]:
    spec = RunSpec(**{"engine": "transformers", "device": "cpu", **fields})
    return [f"{e.message} | fix: {e.fix}" for e in transforms.transform_problems(spec)]


def test_preflight_refuses_two_four_on_the_cpu_with_the_reason() -> None:
    (problem,) = _problems(transform="prune:2:4")
    assert "compute capability 8.0" in problem and "CPU" in problem and "prune:magnitude" in problem


def test_preflight_refuses_two_four_on_weights_the_sparse_kernels_do_not_take() -> None:
    (problem,) = _problems(transform="prune:2:4", device="cuda", quant="fp32")
    assert "bf16 or fp16" in problem and "quant = bf16" in problem


@pytest.mark.parametrize("engine", ["vllm", "llamacpp"])
def test_preflight_refuses_two_four_where_no_engine_kernel_runs_it(engine: str) -> None:
    (problem,) = _problems(transform="prune:2:4", engine=engine, device="cuda")
    assert "only the transformers engine" in problem


def test_preflight_refuses_several_adapters_off_vllm() -> None:
    (problem,) = _problems(transform="lora:8:x3")
    assert "vLLM's multi-LoRA" in problem and "lora:8" in problem
    assert _problems(transform="lora:8:x3", engine="vllm") == []


def test_preflight_names_the_layer_count(tiny: Path) -> None:
    (problem,) = _problems(transform="prune:layers:4", model=str(tiny))
    assert "has 4 decoder layers" in problem and "at most 3" in problem
    assert _problems(transform="prune:layers:3", model=str(tiny)) == []


def test_preflight_refuses_transforms_a_served_engine_cannot_apply() -> None:
    (problem,) = _problems(transform="lora:8", engine="openai")
    assert "cannot transform its weights" in problem


def test_preflight_refuses_pruning_random_weights_but_lets_lora_run() -> None:
    (problem,) = _problems(transform="prune:magnitude:0.5", model="random:tiny-llama")
    assert "random weights" in problem
    assert _problems(transform="lora:8", model="random:tiny-llama") == []


def test_the_sweep_preflight_lists_the_transform_problem() -> None:
    from wattlab.sessions.plan import check_run

    spec = RunSpec(engine="transformers", device="cpu", transform="lora:8:x2", model="random:tiny-llama")
    assert any(p.key == "transform" and "multi-LoRA" in p.text for p in check_run(spec))


def test_wattlab_run_refuses_an_impossible_transform_before_anything_runs(tmp_path: Path) -> None:
    args = ["run", "--engine", "transformers", "--device", "cpu", "--transform", "prune:2:4"]
    out = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", *args, "--db", str(tmp_path / "w.duckdb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "compute capability 8.0" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "w.duckdb").exists()


# --- end to end ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_perplexity_moves_the_right_way_through_wattlab_run(tmp_path: Path) -> None:
    """`wattlab run --transform` on the bundled model (transformers, CPU, the perplexity task):
    pruning half the weights or 8 of 30 layers raises perplexity; 8 layers more than 2."""
    from engine_support import needs_bundled_model

    from wattlab.engines import installed_engines

    needs_bundled_model()
    if "transformers" not in installed_engines():
        pytest.skip("the transformers engine is not installed")
    db = tmp_path / "w.duckdb"
    ppl: dict[str, float] = {}
    for transform in (None, "prune:magnitude:0.5", "prune:layers:2", "prune:layers:8"):
        args = ["--engine", "transformers", "--device", "cpu", "--task", "perplexity", "--limit", "1"]
        args += ["--idle-s", "0", "--warmup", "0", "--quiet", "--json", "--db", str(db)]
        if transform:
            args += ["--transform", transform]
        out = subprocess.run(
            [sys.executable, "-m", "wattlab.cli", "run", *args], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout + out.stderr
        run = json.loads(out.stdout)
        assert run["status"] == "finished" and "perplexity" in run["quality"], run.get("error")
        ppl[str(transform)] = run["quality"]["perplexity"]
    rows = Store(db).query_dicts("SELECT transform, result_json FROM runs")
    notes = {r["transform"]: json.loads(r["result_json"]).get("transform_note") for r in rows}
    assert set(notes) == {None, "prune:magnitude:0.5", "prune:layers:2", "prune:layers:8"}
    assert notes[None] is None
    assert notes["prune:magnitude:0.5"]["sparsity_achieved"] == pytest.approx(0.5, abs=1e-6)
    layers = notes["prune:layers:8"]
    assert layers["layers_before"] == 30 and len(layers["layers_dropped"]) == 8
    assert len(layers["block_influence"]) == 30
    assert ppl["prune:magnitude:0.5"] > ppl["None"]
    assert ppl["prune:layers:8"] > ppl["prune:layers:2"] > ppl["None"]


def _wattlab_run_json(db: Path, *args: str) -> dict[str, Any]:
    common = ["--idle-s", "0", "--quiet", "--json", "--db", str(db)]
    out = subprocess.run(
        [sys.executable, "-m", "wattlab.cli", "run", *args, *common],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run: dict[str, Any] = json.loads(out.stdout)
    assert run["status"] == "finished", run.get("error")
    return run


@pytest.mark.slow
def test_vllm_multi_lora_serves_the_adapters_transformers_attaches(tmp_path: Path) -> None:
    """`wattlab run --engine vllm --transform lora:8:x2` on the CPU: vLLM serves two seeded adapters
    at once (requests round-robin over them). Its perplexity on adapter 0 matches transformers with
    the same adapter attached (lora:8, unmerged) and differs from the base model's: the adapter
    really reaches vLLM's forward pass, not only its config."""
    from engine_support import needs_bundled_model

    from wattlab.engines import installed_engines

    needs_bundled_model()
    missing = {"transformers", "vllm"} - set(installed_engines())
    if missing:
        pytest.skip(f"not installed: {', '.join(sorted(missing))}")
    db = tmp_path / "w.duckdb"
    task = ["--device", "cpu", "--task", "perplexity", "--limit", "1", "--warmup", "0"]
    base = _wattlab_run_json(db, "--engine", "transformers", *task)["quality"]["perplexity"]
    hf = _wattlab_run_json(db, "--engine", "transformers", *task, "--transform", "lora:8")
    vllm = _wattlab_run_json(db, "--engine", "vllm", *task, "--transform", "lora:8:x2")
    assert hf["transform"] == "lora:8" and vllm["transform"] == "lora:8:x2"
    # The seeded adapters are small (B ~ N(0, LORA_B_STD^2)): 2026-11-30 here, base 31.5575,
    # transformers + adapter 31.52399, vLLM + adapter 31.52397. vLLM must land on the adapter's
    # figure, far nearer to it than the base model is.
    lora_shift = abs(hf["quality"]["perplexity"] - base)
    assert lora_shift > 1e-3
    assert abs(vllm["quality"]["perplexity"] - hf["quality"]["perplexity"]) < 0.1 * lora_shift
    (row,) = Store(db).query_dicts("SELECT result_json FROM runs WHERE engine = 'vllm'")
    note = json.loads(row["result_json"])["transform_note"]
    assert len(note["adapters"]) == 2
    assert note["adapters"][0]["path"] != note["adapters"][1]["path"]
    # a generation run through both adapters at once finishes (requests alternate between them)
    gen = ["--engine", "vllm", "--device", "cpu", "--transform", "lora:8:x2", "--batch-size", "2"]
    gen += ["--requests", "2", "--input-tokens", "32", "--output-tokens", "8", "--warmup", "0"]
    assert _wattlab_run_json(db, *gen)["tokens_out"] == 16


@pytest.mark.gpu
def test_two_four_runs_as_semi_structured_sparse_tensors_on_the_gpu(tiny: Path) -> None:
    """On an Ampere+ GPU the transformers engine serves prune:2:4 through PyTorch's semi-structured
    sparse tensors, and its log-probabilities match the same 2:4 weights multiplied dense."""
    import torch
    from torch.sparse import SparseSemiStructuredTensor
    from transformers import AutoModelForCausalLM

    from wattlab.engines.transformers_engine import TransformersEngine

    if torch.cuda.get_device_capability(0) < (8, 0):
        pytest.skip("2:4 sparse kernels need compute capability 8.0+")
    cfg = models.resolve(str(tiny), "transformers", "bf16", "cuda", transform="prune:2:4")
    engine = TransformersEngine(cfg)
    engine.load()
    sparse = [m for m in engine.model.modules() if isinstance(m, torch.nn.Linear)]
    assert any(isinstance(m.weight, SparseSemiStructuredTensor) for m in sparse)
    ids = list(range(2, 66))
    got = engine.prompt_logprobs(ids)
    dense = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=torch.bfloat16, device_map={"": "cuda"})
    dense.eval()
    with torch.no_grad():
        logits = dense(input_ids=torch.tensor([ids], device="cuda")).logits.float().log_softmax(-1)
    expected = [float(logits[0, i - 1, ids[i]]) for i in range(1, len(ids))]
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 0.1
