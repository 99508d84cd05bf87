"""Generation throughput of sami's generator: output tokens per second by batch size.

    python benchmarks/generation.py                                   # embedded SmolLM2, CPU
    python benchmarks/generation.py --model gemma3-270m --batch-sizes 1 8
    python benchmarks/generation.py --model llama-1b --device cuda --batch-sizes 1 64 256 --cache static

Real workload: SAMI prompts (the hh constitutions on built-in dialogue queries) through
`sami.generation.generate_texts`, greedy, every response forced to `--new-tokens` tokens
(`min_new_tokens`) so the count is the same at every batch size. `llama-1b` is a random-weight
Llama of the 1.2B shape (GPU benchmarks; no weights needed). On a GPU the table adds the
memory-bandwidth ceiling (weights read once per decode step) and the fraction reached.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sami.constitutions import build_sampler, query_rng, render_constitution
from sami.data import load_queries
from sami.generation import SamplingConfig, generate_texts, resolve_template
from sami.models import load_model, load_tokenizer
from sami.principles import load_principles

LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=4096, tie_word_embeddings=True)


def build(model_name: str, dtype: torch.dtype, device: str):
    if model_name == "llama-1b":
        tokenizer = load_tokenizer("smollm2-135m")  # any real tokenizer: ids beyond its vocab are never produced
        with torch.device(device):
            model = LlamaForCausalLM(LlamaConfig(**LLAMA_1B)).to(dtype).eval()
        return model, tokenizer
    return load_model(model_name, dtype=dtype, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--cache", default=None, help="cache_implementation, e.g. static (compiled on GPU)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        model, tokenizer = build(args.model, dtype, args.device)
        if args.cache:
            model.generation_config.cache_implementation = args.cache
        model.generation_config.min_new_tokens = args.new_tokens
        sampler = build_sampler("fixed_pair", load_principles("hh"), 2)
        template = resolve_template(tokenizer, "dialogue")
        queries = load_queries("dialogue", "train")
        prompts = [template.render(tokenizer, render_constitution(sampler.sample(query_rng(0, q.id))[0]), q.text)
                   for q in queries]
        prompt_tokens = sum(len(tokenizer(p)["input_ids"]) for p in prompts) / len(prompts)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        for batch in args.batch_sizes:
            sampling = SamplingConfig(max_new_tokens=args.new_tokens, batch_size=batch)
            generate_texts(model, tokenizer, prompts[:batch], sampling, add_special_tokens=template.add_special_tokens)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = generate_texts(model, tokenizer, prompts[batch : 2 * batch], sampling,
                                 add_special_tokens=template.add_special_tokens)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            tokens = sum(o.num_tokens for o in out)
            row = {"dtype": dtype_name, "batch": batch, "seconds": seconds, "tokens/s": tokens / seconds}
            if args.device.startswith("cuda"):
                bandwidth = 3.35e12 if "H100" in torch.cuda.get_device_name() else 4.8e12
                ceiling = batch * bandwidth / weight_bytes
                row["ceiling tokens/s"] = ceiling
                row["% of ceiling"] = 100 * row["tokens/s"] / ceiling
            rows.append(row)
        del model

    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\n{args.model} on {machine}; prompts ~{prompt_tokens:.0f} tokens, {args.new_tokens} new tokens, cache={args.cache}\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---:|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
