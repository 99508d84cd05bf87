"""Benchmark one SAMI training step (forward + backward of the loss): plain vs shared-prefix layout.

Each (layout, C) runs in a fresh subprocess, so peak memory is that configuration's own. A step is
``sami_loss(contrastive_logprobs(model, batch)).loss.mean().backward()`` (no optimiser step). Every query has
C constitution prefixes of exactly --prefix-len tokens and C responses of exactly --response-len tokens,
random ids; models have random weights from their configs (speed does not depend on the weights),
except ``smollm2``, the embedded GGUF model.

Columns:
  layouts        naive: B*C*C rows [c_i x | y_j], full-vocabulary float32 logits at every position (the released
                 code's way); plain: the same rows, LM head on response positions only, chunked;
                 shared: B*C rows [c_i x | y_1 | ... | y_C] with a block mask, LM head as plain
  rows x T       the batch the model sees: B*C*C rows (naive, plain) or B*C rows (shared), padded length T
  s/step         median wall time of --steps timed steps, after --warmup untimed ones
  CPU s/step     median CPU time of this process (all threads) per step: on a shared CPU it is steadier than wall
                 time, and the speed-up is computed from it there; on GPU the speed-up uses wall time
  tokens/s       non-padding tokens fed to the model per second (the layout's own tokens)
  pairs/s        (constitution, response) pairs scored per second: B*C*C per step, the same work in both layouts
  peak mem       CUDA only: torch.cuda.max_memory_allocated during the timed steps (weights, gradients, activations).
                 On CPU, resident-set deltas (sampled /proc/self/statm, ru_maxrss) were tried and dropped: the
                 allocator's caching made them contradict the saved bytes (see docs/performance.md)
  saved          bytes of tensors autograd saves for backward in one step (parameters and their views excluded,
                 storages counted once), measured with saved_tensors_hooks in an extra untimed step: the activation
                 memory, deterministic and device-independent
  MFU            GPU only: model FLOPs / s / --peak-tflops. Model FLOPs per step = 6 * N_body * tokens (4 * with
                 LoRA: frozen weights get no weight gradient) + 6 * N_head * scored tokens + 12 * layers * d_model
                 * attended (query, key) pairs; recomputation (checkpointing, the chunked head) is not counted

Commands (paste):
  # CPU, tiny model and the embedded model, small lengths
  # (--threads 1: on a CPU shared with other jobs, more threads than free cores makes timings erratic)
  python benchmarks/objective.py --model tiny --C 2 4 --batch 2 --prefix-len 128 --response-len 32 --threads 1
  python benchmarks/objective.py --model smollm2 --C 2 4 --batch 1 --prefix-len 64 --response-len 16 --threads 1
  # one H100 (bf16, TL;DR-like lengths)
  python benchmarks/objective.py --model llama-1b --C 2 4 --batch 2 --prefix-len 520 --response-len 80 \\
      --layouts naive plain shared
  python benchmarks/objective.py --model llama-8b --C 2 4 --batch 2 --prefix-len 520 --response-len 80 \\
      --lora --grad-checkpointing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

SHAPES = {  # hidden, layers, heads, kv heads, intermediate, vocab
    "tiny": (64, 2, 4, 2, 128, 1024),
    "llama-1b": (2048, 16, 32, 8, 8192, 128256),
    "llama-8b": (4096, 32, 32, 8, 14336, 128256),
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "smollm2", "llama-1b", "llama-8b"], default="tiny")
    p.add_argument("--C", type=int, nargs="+", default=[2, 4], help="constitutions per query")
    p.add_argument("--batch", type=int, default=2, help="queries per step (B)")
    p.add_argument("--prefix-len", type=int, default=500, help="tokens of constitution + query")
    p.add_argument("--response-len", type=int, default=80, help="tokens of each response")
    p.add_argument(
        "--layouts",
        nargs="+",
        default=["plain", "shared"],
        choices=["naive", "plain", "shared"],
        help="naive: the plain rows with full-vocabulary float32 logits at every position (the released code's way)",
    )
    p.add_argument("--dtype", choices=list(DTYPES), default=None, help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--attn", default="sdpa", help="attn_implementation")
    p.add_argument("--lora", action="store_true", help="LoRA r=16 on all linear layers (peft)")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM: 989)")
    p.add_argument(
        "--flops-only", action="store_true", help="print each layout's model FLOPs per step (meta device, no timing)"
    )
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: 'layout:C', run in a subprocess
    return p


def build_model(args):
    from transformers import AutoModelForCausalLM, LlamaConfig

    if args.model == "smollm2":
        from sami.models import load_model

        model, _ = load_model("smollm2-135m", dtype=DTYPES[args.dtype], device=args.device)  # cached after the first run
        model.set_attn_implementation(args.attn)
    else:
        hidden, layers, heads, kv, inter, vocab = SHAPES[args.model]
        config = LlamaConfig(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            intermediate_size=inter,
            vocab_size=vocab,
            max_position_embeddings=8192,
            tie_word_embeddings=args.model == "llama-1b",  # as Llama 3.2 1B; 8B is untied
        )
        with torch.device(args.device):
            model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[args.dtype], attn_implementation=args.attn)
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if args.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
    return model.train()


def make_batch(args, C: int, layout: str, vocab: int):
    from sami.objective import ContrastiveExample, collate_contrastive

    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    examples = [
        ContrastiveExample([ids(args.prefix_len) for _ in range(C)], [ids(args.response_len) for _ in range(C)])
        for _ in range(args.batch)
    ]
    return collate_contrastive(examples, layout, pad_token_id=0)


def naive_logprobs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The released code's baseline: logits over the whole vocabulary at every position, log-softmax in float32."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    B, C = batch["response_lengths"].shape
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logp = logits.float().log_softmax(-1)  # (R, T, V)
    token_logp = logp[batch["token_rows"], batch["token_positions"], batch["token_labels"]]  # (N,)
    sums = token_logp.new_zeros(B * C * C).index_add(0, batch["token_cells"], token_logp).view(B, C, C)
    return sums / batch["response_lengths"].unsqueeze(1)  # (B, C, C)


def model_flops(model, batch, lora: bool, naive: bool = False) -> float:
    """Model FLOPs of one forward+backward over this batch (see the module docstring)."""
    from sami.models.capabilities import unwrap

    base = unwrap(model)
    params = dict(base.named_parameters())  # a tied head appears once
    head, embed = base.get_output_embeddings().weight, base.get_input_embeddings().weight
    n_lora = sum(p.numel() for n, p in params.items() if "lora_" in n)
    n_head = head.numel()
    n_body = sum(p.numel() for p in params.values()) - n_lora - embed.numel() - (0 if head is embed else n_head)
    real = batch["segment_ids"] >= 0 if "segment_ids" in batch else batch["attention_mask"].bool()
    tokens = int(real.sum())
    scored = tokens if naive else batch["token_labels"].numel()  # positions the LM head runs on
    if "segment_ids" in batch:  # a response token attends the prefix and its own earlier tokens
        seg, pos = batch["segment_ids"], batch["position_ids"]
        pairs = int(torch.where(seg >= 0, pos + 1, 0).sum())
    else:
        pairs = int((real.cumsum(1) * real).sum())
    cfg = base.config
    d_model = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    body = (4 if lora else 6) * n_body * tokens
    return body + (4 if lora else 6) * n_head * scored + 12 * cfg.num_hidden_layers * d_model * pairs


def saved_for_backward(model, step) -> int:
    """Bytes of the distinct storages autograd saves during ``step()``, parameters (and views of them) excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(storages.values())


def run_one(args, layout: str, C: int) -> dict:
    from sami.models.capabilities import vocab_size
    from sami.objective import contrastive_logprobs, resolve_layout, sami_loss

    torch.manual_seed(0)
    model = build_model(args)
    if layout == "shared" and resolve_layout(model, "auto") != "shared":
        return {"layout": layout, "C": C, "error": "shared layout not supported by this model"}
    batch = make_batch(args, C, "plain" if layout == "naive" else layout, vocab_size(model))
    cuda = args.device.startswith("cuda")
    logprobs = naive_logprobs if layout == "naive" else contrastive_logprobs

    def step():
        logp = logprobs(model, batch)  # (B, C, C)
        sami_loss(logp).loss.mean().backward()
        model.zero_grad(set_to_none=False)  # gradients stay allocated, as in training

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    saved = saved_for_backward(model, step)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times = [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    seconds = statistics.median(times)
    real = batch["segment_ids"] >= 0 if "segment_ids" in batch else batch["attention_mask"].bool()
    flops = model_flops(model, batch, args.lora, naive=layout == "naive")
    return {
        "layout": layout,
        "C": C,
        "rows": tuple(batch["input_ids"].shape),
        "seconds": seconds,
        "cpu_seconds": statistics.median(cpu_times),
        "tokens_per_s": int(real.sum()) / seconds,
        "pairs_per_s": args.batch * C * C / seconds,
        "peak_bytes": peak,
        "saved_bytes": saved,
        "tflops": flops / seconds / 1e12,
        "mfu": flops / seconds / (args.peak_tflops * 1e12) if cuda else None,
    }


def machine(args) -> str:
    if args.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    load = os.getloadavg()[0]
    return (
        f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
        f", torch {torch.__version__}"
        f", load average {load:.1f} at start (other processes share the cores)"
    )


def memory(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def table(args, results: list[dict]) -> str:
    lines = [
        (
            "| model | layout | C | rows x T | s/step | CPU s/step | speed-up | tokens/s | pairs/s | peak mem "
            "| saved | TFLOP/s | MFU |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    key = "seconds" if args.device.startswith("cuda") else "cpu_seconds"
    plain = {r["C"]: r[key] for r in results if r["layout"] == "plain" and "error" not in r}
    for r in results:
        if "error" in r:
            lines.append(f"| {args.model} | {r['layout']} | {r['C']} | {r['error']} |||||||||")
            continue
        speedup = f"{plain[r['C']] / r[key]:.2f}x" if r["C"] in plain else "-"
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        lines.append(
            f"| {args.model} | {r['layout']} | {r['C']} | {r['rows'][0]} x {r['rows'][1]} | {r['seconds']:.3f} | "
            f"{r['cpu_seconds']:.3f} | {speedup} | {r['tokens_per_s']:,.0f} | {r['pairs_per_s']:.1f} | "
            f"{memory(r['peak_bytes']) if r['peak_bytes'] is not None else '-'} | {memory(r['saved_bytes'])} | "
            f"{r['tflops']:.2f} | {mfu} |"
        )
    return "\n".join(lines)


def flops_table(args) -> str:
    """Model FLOPs per step of each layout, computed on the meta device (nothing is run)."""
    if args.model == "smollm2":
        raise SystemExit("--flops-only needs a config-built model: tiny, llama-1b or llama-8b")
    args.device, args.grad_checkpointing = "meta", False
    model = build_model(args)
    lines = [
        "| model | layout | C | rows x T | tokens | model TFLOP/step | vs plain |",
        "|---|---|---|---|---|---|---|",
    ]
    vocab = SHAPES[args.model][-1]
    for C in args.C:
        flops = {}
        for layout in args.layouts:
            batch = make_batch(args, C, "plain" if layout == "naive" else layout, vocab)
            flops[layout] = model_flops(model, batch, args.lora, naive=layout == "naive")
            real = batch["segment_ids"] >= 0 if "segment_ids" in batch else batch["attention_mask"].bool()
            ratio = f"{flops[layout] / flops['plain']:.2f}" if "plain" in flops else "-"
            lines.append(
                f"| {args.model} | {layout} | {C} | {batch['input_ids'].shape[0]} x {batch['input_ids'].shape[1]} | "
                f"{int(real.sum()):,} | {flops[layout] / 1e12:.2f} | {ratio} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        layout, C = args.one.split(":")
        print("RESULT " + json.dumps(run_one(args, layout, int(C))), flush=True)
        return
    if args.flops_only:
        print(flops_table(args))
        return
    own = list(argv if argv is not None else sys.argv[1:])
    results = []
    for C in args.C:
        for layout in args.layouts:
            cmd = [sys.executable, os.path.abspath(__file__), *own, "--one", f"{layout}:{C}"]
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                results.append({"layout": layout, "C": C, "error": f"failed: {tail[0][:120]}"})
            else:
                results.append(json.loads(lines[-1][len("RESULT ") :]))
            print(f"done {layout} C={C}", file=sys.stderr, flush=True)
    print(f"machine: {machine(args)}")
    print(
        f"model {args.model}, {args.dtype}, B={args.batch}, prefix {args.prefix_len}, responses {args.response_len}, "
        f"attn {args.attn}{', LoRA r=16' if args.lora else ''}"
        f"{', grad checkpointing' if args.grad_checkpointing else ''}"
        f", median of {args.steps} steps after {args.warmup} warm-up"
    )
    print()
    print(table(args, results))


if __name__ == "__main__":
    main()
