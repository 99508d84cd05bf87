"""benchmarks/memory_plan.py: exact parameter counts, the sharding arithmetic, the 70B verdict, config folders."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_plan.py"
_spec = importlib.util.spec_from_file_location("memory_plan", SCRIPT)
memory_plan = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = memory_plan  # dataclasses look up their module
_spec.loader.exec_module(memory_plan)
GIB = 2**30


@cache
def shape(name: str):
    return memory_plan.measure(memory_plan.load_config(name), name)


def rows(name: str, *flags: str) -> dict:
    args = memory_plan.make_parser().parse_args(["--model", name, "--lora-r", "0", *flags])
    return {r.key: r for r in memory_plan.plan(shape(name), args)}


@pytest.mark.parametrize(
    "name, published",
    [("mistral-7b", 7.24e9), ("llama3-8b", 8.03e9), ("llama3-70b", 70.55e9), ("mixtral-8x7b", 46.7e9)],
)
def test_parameter_counts_match_the_published_sizes(name, published):
    assert shape(name).params == pytest.approx(published, rel=0.01)


def test_memory_scales_as_one_over_the_shards():
    four, eight = rows("mistral-7b", "--fsdp", "4"), rows("mistral-7b", "--fsdp", "8")
    for key in ("full", "score"):
        assert four[key].parts["sharded"] == pytest.approx(2 * eight[key].parts["sharded"])
    assert four["full"].parts["step_temp"] == pytest.approx(2 * eight["full"].parts["step_temp"])
    tp1, tp2 = rows("mistral-7b", "--tp", "1"), rows("mistral-7b", "--tp", "2")
    assert tp1["vllm"].parts["weights"] == pytest.approx(2 * tp2["vllm"].parts["weights"])
    assert tp1["vllm"].parts["kv"] == pytest.approx(2 * tp2["vllm"].parts["kv"])  # 8 KV heads split over 2 GPUs
    assert tp1["hf"].gib == pytest.approx(tp2["hf"].gib)  # HF generate keeps a full copy per process


def test_llama3_70b_full_fine_tuning_needs_offload_on_8x80gb():
    n = 70.55e9
    one = rows("llama3-70b", "--gpus", "1", "--optim", "adamw")
    assert one["full"].parts["sharded"] == pytest.approx(n * 16 / GIB, rel=0.01)  # fp32 param + grad + 2 states
    assert not one["full"].fits

    eight = rows("llama3-70b", "--gpus", "8", "--optim", "rmsprop", "--tp", "8", "--batch", "1")
    full = eight["full"]
    assert full.parts["sharded"] == pytest.approx(n * 12 / 8 / GIB, rel=0.01)  # 98.5 GiB: fp32 + RMSprop over 8
    assert not full.fits and full.gib > full.parts["sharded"]
    assert eight["offload"].fits and eight["offload"].gib < 30
    assert eight["score"].fits  # forward only: fp32 weights over 8 = 32.9 GiB
    assert eight["vllm"].parts["weights"] == pytest.approx(2 * n / 8 / GIB, rel=0.01) and eight["vllm"].fits
    assert not eight["hf"].fits and not eight["naive"].fits
    args = memory_plan.make_parser().parse_args(["--model", "llama3-70b", "--optim", "rmsprop", "--lora-r", "0"])
    text = memory_plan.verdict(shape("llama3-70b"), args, list(eight.values()))
    assert "full fine-tuning (FSDP/8 full, rmsprop)" in text and "does NOT fit" in text and "with CPU offload" in text


def test_a_config_folder_works(tmp_path, capsys):
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    config.save_pretrained(tmp_path)
    measured = memory_plan.measure(memory_plan.load_config(str(tmp_path)), "tiny", lora_r=4)
    model = LlamaForCausalLM(config)
    assert measured.params == sum(p.numel() for p in model.parameters())
    assert measured.layer_params == sum(p.numel() for p in model.model.layers[0].parameters())
    per_layer = 4 * (2 * (64 + 64) + 2 * (64 + 32) + 3 * (64 + 128))  # r * (in + out): q, o; k, v; gate, up, down
    assert measured.lora_params == 3 * per_layer
    memory_plan.main(["--model", str(tmp_path), "--gpus", "2", "--gpu-memory-gib", "8", "--lora-r", "4"])
    out = capsys.readouterr().out
    assert "| stage | what lives there | GiB per GPU | GPU GiB | fits | headroom |" in out
    assert "| train: FSDP/2 LoRA r=4 |" in out and f"VERDICT {tmp_path.name}, 176.6K params" in out


def test_activation_formula_matches_saved_bytes():
    """Bytes autograd saves per token per layer in bf16 (no GQA, so repeated K/V change nothing) vs the formula."""

    def saved(layers: int) -> int:
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=64, hidden_size=128, intermediate_size=352, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=4, attn_implementation="sdpa")
        model = LlamaForCausalLM(config).to(torch.bfloat16).train()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages = {}

        def pack(t):
            if t.untyped_storage().data_ptr() not in params:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.model(input_ids=torch.randint(0, 64, (2, 32)))
        return sum(storages.values())

    per_token_layer = (saved(3) - saved(1)) / 2 / 64
    formula = memory_plan.saved_per_token_layer(memory_plan.measure(
        LlamaConfig(vocab_size=64, hidden_size=128, intermediate_size=352, num_hidden_layers=1,
                    num_attention_heads=4, num_key_value_heads=4)))
    assert per_token_layer == pytest.approx(formula, rel=0.1)
