"""Generation throughput of sami's backends: output tokens per second by batch size, engine start, weight swap.

    python benchmarks/generation.py                                   # hf backend, embedded SmolLM2, CPU
    python benchmarks/generation.py --backends hf vllm --dtypes bfloat16 --batch-sizes 64 --new-tokens 128
    python benchmarks/generation.py --model llama-1b --device cuda --backends hf vllm --dtypes bfloat16 \\
        --batch-sizes 1 16 64 256 --new-tokens 128

The vllm backend needs vLLM (on CPU: the vLLM virtual environment of docs/generation.md; run the
script with that environment's python, which also runs the hf backend). Real workload: SAMI
prompts (the hh constitutions on the built-in dialogue queries, chat template) through
``Generator.generate``, greedy; tokens/s counts the tokens each backend actually generated.
Columns:

- ``start s``: building the generator (vLLM: engine start; hf: loading the weights);
- ``swap s``: ``Generator.load`` of the same weights from their folder (vLLM: in-place reload);
- ``seconds`` / ``tokens/s``: one timed ``generate`` of ``batch`` prompts after one warm-up batch;
- ``peak RSS GiB``: the largest resident memory of this process and its children (vLLM's engine runs in
  child processes), read from ``/proc`` after the run;
- on a GPU, the ceiling set by reading the weights once per decode step, and the fraction reached.

``llama-1b`` is a random-weight Llama of the 1.2B shape saved to a temporary folder (GPU runs; no
download). Each backend runs in a fresh subprocess so memory and threads do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=4096, tie_word_embeddings=True)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="embedded name, checkpoint folder, or llama-1b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backends", nargs="+", default=["hf"], choices=["hf", "vllm"])
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--cache", default=None, help="hf: cache_implementation, e.g. static (compiled on GPU)")
    parser.add_argument("--enforce-eager", action="store_true", help="vllm: no graph capture/compilation")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return parser


def random_llama_1b(folder: Path) -> str:
    """A random-weight 1.2B Llama in bf16 with SmolLM2's tokenizer (ids beyond its vocab are never produced)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sami.models import load_tokenizer

    if not (folder / "config.json").exists():
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaForCausalLM(LlamaConfig(**LLAMA_1B)).to(torch.bfloat16)
        model.save_pretrained(folder)
        load_tokenizer("smollm2-135m").save_pretrained(folder)
    return str(folder)


def sami_prompts(tokenizer, count: int) -> list[list[int]]:
    from sami.constitutions import build_sampler, query_rng, render_constitution
    from sami.data import load_queries
    from sami.generation import encode_prompts, resolve_template
    from sami.principles import load_principles

    sampler = build_sampler("fixed_pair", load_principles("hh"), 2)
    template = resolve_template(tokenizer, "dialogue")
    texts = [template.render(tokenizer, render_constitution(c), q.text)
             for q in load_queries("dialogue", "all") for c in sampler.sample(query_rng(0, q.id))]
    return encode_prompts(tokenizer, (texts * (count // len(texts) + 1))[:count], template.add_special_tokens)


def peak_rss_gib() -> float:
    """Peak resident memory (VmHWM) of this process plus its living descendants."""
    def children(pid: int) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                        found += [int(entry.name), *children(int(entry.name))]
                except (OSError, IndexError, ValueError):
                    continue
        return found

    total = 0
    for pid in [os.getpid(), *children(os.getpid())]:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmHWM")), 0)
    return total / 2**20


def run_backend(args, backend: str, dtype: str, spec: str) -> list[dict]:
    """Time one backend and dtype (in this process); return one row per batch size."""
    import torch

    from sami.generation import SamplingConfig, build_generator
    from sami.models.loading import resolve_model_path

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    generator = build_generator(spec, backend, dtype=dtype, device=args.device, vllm_enforce_eager=args.enforce_eager)
    started = time.perf_counter() - start
    if backend == "hf" and args.cache:
        generator.model.generation_config.cache_implementation = args.cache
    start = time.perf_counter()
    generator.load(resolve_model_path(spec))  # the same weights under another name: a real reload
    swapped = time.perf_counter() - start
    weight_bytes = None
    if backend == "hf":
        weight_bytes = sum(p.numel() * p.element_size() for p in generator.model.parameters())
    rows = []
    prompts = sami_prompts(generator.tokenizer, 2 * max(args.batch_sizes))
    for batch in args.batch_sizes:
        sampling = SamplingConfig(max_new_tokens=args.new_tokens, batch_size=batch)
        generator.generate(prompts[:batch], sampling)  # warm-up
        cuda = args.device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = generator.generate(prompts[batch : 2 * batch], sampling)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        tokens = sum(o.num_tokens for o in out)
        row = {"backend": backend, "dtype": dtype, "batch": batch, "start s": started, "swap s": swapped,
               "seconds": seconds, "tokens/s": tokens / seconds}
        if cuda and weight_bytes:
            bandwidth = 3.35e12 if "H100" in torch.cuda.get_device_name() else 4.8e12
            row["ceiling tokens/s"] = batch * bandwidth / weight_bytes
            row["% of ceiling"] = 100 * row["tokens/s"] / row["ceiling tokens/s"]
        rows.append(row)
    peak = peak_rss_gib()
    for row in rows:
        row["peak RSS GiB"] = peak
    return rows


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    if args._worker:  # one backend and dtype, in a fresh process
        backend, dtype, spec = json.loads(args._worker)
        print("ROWS " + json.dumps(run_backend(args, backend, dtype, spec)), flush=True)
        return
    spec = args.model
    if spec == "llama-1b":
        spec = random_llama_1b(Path(tempfile.gettempdir()) / "sami-bench-llama-1b")
    rows = []
    for backend in args.backends:
        for dtype in args.dtypes:
            command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                       "--_worker", json.dumps([backend, dtype, spec])]
            result = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in result.stdout.splitlines() if line.startswith("ROWS ")]
            if result.returncode or not lines:
                sys.exit(f"{backend}/{dtype} failed:\n{result.stderr[-3000:]}")
            rows += json.loads(lines[-1][5:])

    import torch

    machine = (torch.cuda.get_device_name() if args.device.startswith("cuda")
               else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads={args.threads}")
    print(f"\n{args.model} on {machine}; SAMI chat prompts, greedy, up to {args.new_tokens} new tokens\n")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * 3 + "---:|" * (len(keys) - 3))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:,.1f}" if isinstance(row.get(k), float) else str(row.get(k, "-"))
                                for k in keys) + " |")


if __name__ == "__main__":
    main()
