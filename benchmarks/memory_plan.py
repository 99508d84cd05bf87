"""Per-GPU memory of each stage of a SAMI iteration, against the GPU's memory: will it fit?

    python benchmarks/memory_plan.py                                   # mistral-7b, 8 x 80 GiB, AdamW
    # the paper recipes (sami/config/recipes): hh_mistral7b, tldr_weak_writer, diverse_llama3_70b
    python benchmarks/memory_plan.py --model mistral-7b --optim adamw --batch 2 --prefix-len 320 \\
        --response-len 350 --new-tokens 350 --gen-batch 64 --tp 1
    python benchmarks/memory_plan.py --model mixtral-8x7b --optim rmsprop --batch 1 --prefix-len 700 \\
        --response-len 350 --new-tokens 350 --gen-batch 64 --tp 2
    python benchmarks/memory_plan.py --model llama3-70b --optim rmsprop --batch 1 --prefix-len 700 \\
        --response-len 500 --new-tokens 500 --gen-batch 32 --tp 8
    python benchmarks/memory_plan.py --model path/to/checkpoint --gpus 4 --gpu-memory-gib 40 --lora-r 16

Nothing runs on a GPU: the parameter counts are exact (the model is built from its config on the meta
device), the rest is the arithmetic below. `--model` is a built-in shape (SHAPES, the published configs)
or a folder with a config.json. Stages run one after another, so each row is a separate peak; the GPU
must hold the largest row that the chosen plan uses (a vLLM engine left alive during training keeps its
reservation: free it between stages, e.g. with vLLM's sleep mode). GiB = 2**30 bytes; an "80 GB" GPU
offers a little less than 80 GiB to programs, so a row needs a few GiB of headroom to be safe.

Notation: N parameters; L decoder layers; h hidden size; q = heads * head_dim; kv = kv_heads * head_dim;
i = MLP (expert) width; k = experts per token (1 for dense models); V vocabulary; S = --fsdp shards;
P_layer = the largest decoder layer's parameters; P_tail = final norm + LM head (+ embeddings if tied).
Every row adds --overhead-gib (CUDA context, NCCL buffers, allocator slack; for vLLM also its activation
workspace and CUDA graphs).

  generate, vLLM   weights 2N / tp + KV cache; KV per token = 2 (K, V) * L * kv_heads/tp * head_dim * 2 bytes
                   (at least one KV head per GPU), for --gen-batch * (--prompt-len + --new-tokens) tokens.
  vLLM reserve     vLLM takes gpu_memory_utilization * GPU up front; what is left after the weights and the
                   overhead is its KV pool, which holds pool / (KV per token * (prompt + new)) sequences at once.
  generate, HF     one full bf16 copy per process (2N) + the KV cache of --gen-batch sequences (not split).
  naive load       a full fp32 copy per process before sharding (4N): what loading each rank's model onto its
                   GPU and then wrapping it in FSDP costs. Sharded loading avoids it: the model stays in CPU RAM
                   (or on the meta device, with fsdp_cpu_ram_efficient_loading) until FSDP moves the shards in.
  train, FSDP      full shard, fp32 master weights, bf16 compute (accelerate mixed_precision: bf16):
                   sharded states   N * (4 param + 4 grad + 4 * m) / S, m = 2 (AdamW), 1 (RMSprop), 0 (SGD)
                   gathered units   2 * (P_tail + 2 * P_layer) bf16 params (accelerate keeps the tail unit,
                                    norm + LM head, gathered through the step; the current decoder layer and
                                    the prefetched next) + 2 * max(P_layer, P_tail) bf16 gradients before
                                    their reduce-scatter
                   activations      SAMI shared-prefix layout: R = --batch * C rows of T = prefix + C *
                                    response tokens, R * T tokens; a = 16h + 8q + 8ki (+ 4kh for MoE) bytes per
                                    token per layer saved for backward (K/V are repeated to q heads: sdpa with
                                    a custom mask); with gradient checkpointing L * 2h (each layer's bf16
                                    input) + a (one layer recomputed) per token, without L * a; plus 8h per
                                    token (final norm) and the (R, 1, T, T) bool mask
                   LM head chunk    2**26 logits per chunk, 14 bytes each at the backward peak (bf16 + fp32
                                    logits, fp32 softmax/gradient, bf16 gradient): 0.9 GiB
                   optimizer step   sharded states + 4N / S: torch's foreach AdamW/RMSprop (the default on
                                    GPU, DTensor shards included) allocates sqrt(v) for every parameter at once;
                                    the row is max(forward/backward, optimizer step)
  train, offload   FSDP with fsdp_offload_params: sharded states live in host RAM (N * (8 + 4m) bytes in all);
                   the GPU keeps the gathered units (+ the fp32 shards of two layers copied in), activations,
                   the head chunk.
  train, LoRA      frozen base N * (2 or 4) / S (--lora-base-dtype), adapters n_lora * (8 + 4m) / S with
                   n_lora = peft's count for "all-linear" at rank r (experts included), gathered bf16 params
                   (no base gradients), the same activations and head chunk.
  score, held-out  forward only with the training setup: fp32 weights sharded 4N / S, gathered bf16 units,
                   one layer's transient activations (6h + 6i bytes per token, nothing kept for backward) for
                   --eval-batch * C rows, the head chunk forward (10 bytes per logit).

The activation coefficients are the bytes autograd saves in a bf16 Llama/Mixtral layer, measured with
saved_tensors_hooks on CPU (causal, unrepeated K/V: 16h + 4q + 4kv + 8ki, +4kh for MoE; the masked CUDA
path repeats K/V, hence 8q); tests/benchmarks checks the formula against such a measurement. Padding is
counted as tokens (rows are padded to the longest), so set --prefix-len / --response-len to the longest
prompt / response of a micro-batch.
"""

from __future__ import annotations

import argparse
import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, MistralConfig, MixtralConfig, PretrainedConfig

GIB = 2**30
HEAD_CHUNK = 2**26  # logits per LM-head chunk (sami.objective.logprobs._HEAD_CHUNK_ELEMENTS)
OPTIM_STATES = {"adamw": 2, "rmsprop": 1, "sgd": 0}  # fp32 states per parameter
OPTIM_TEMP = {"adamw": 4, "rmsprop": 4, "sgd": 0}  # bytes per parameter: torch's foreach step allocates sqrt(v)
TIGHT = 0.05  # headroom below this fraction of the GPU is reported as tight

# The published configs (config.json of each hub repo), sizes only.
SHAPES: dict[str, PretrainedConfig] = {
    "mistral-7b": MistralConfig(  # mistralai/Mistral-7B-v0.1
        vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=32768, sliding_window=4096, tie_word_embeddings=False),
    "mixtral-8x7b": MixtralConfig(  # mistralai/Mixtral-8x7B-v0.1
        vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=32768,
        rope_theta=1e6, tie_word_embeddings=False),
    "llama3-8b": LlamaConfig(  # meta-llama/Meta-Llama-3-8B
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False),
    "llama3-70b": LlamaConfig(  # meta-llama/Meta-Llama-3-70B
        vocab_size=128256, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False),
    "llama-1b": LlamaConfig(  # meta-llama/Llama-3.2-1B
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rope_theta=500000.0,
        tie_word_embeddings=True),
    "smollm2-135m": LlamaConfig(  # HuggingFaceTB/SmolLM2-135M
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True),
}


@dataclass
class Shape:
    """What the formulae need, read from a config and its model built on the meta device."""

    name: str
    params: int  # N, distinct parameters (a tied head counted once)
    layer_params: int  # P_layer, the largest decoder layer (one FSDP unit)
    tail_params: int  # P_tail, final norm + LM head (+ input embeddings when tied)
    lora_params: int  # LoRA adapter parameters at the requested rank (0: none)
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    experts_per_token: int  # k; 1 for dense models
    vocab: int


@dataclass
class Row:
    key: str  # vllm, vllm_reserve, hf, naive, full, offload, lora, score
    stage: str
    lives: str
    gib: float  # per GPU, overhead included
    gpu_gib: float
    parts: dict[str, float] = field(default_factory=dict)  # GiB per component, overhead excluded
    ok: bool | None = None  # overrides gib <= gpu_gib (the vLLM reservation: does its KV pool hold a sequence?)

    @property
    def fits(self) -> bool:
        return self.gib <= self.gpu_gib if self.ok is None else self.ok

    @property
    def headroom(self) -> float:
        return self.gpu_gib - self.gib


def load_config(model: str) -> PretrainedConfig:
    if model in SHAPES:
        return SHAPES[model]
    if not (Path(model) / "config.json").is_file():
        raise SystemExit(f"--model {model!r}: not a built-in shape ({', '.join(SHAPES)}) nor a folder with config.json")
    return AutoConfig.from_pretrained(model)


def lora_params(config: PretrainedConfig, r: int) -> int:
    """peft's count for target_modules="all-linear" (sami's default), on a one-layer copy of the model, times L.

    One layer keeps it fast (peft takes seconds on a 70B meta model); models whose layers differ (some dense,
    some MoE) are then approximate. With transformers 5, "all-linear" also adapts MoE experts and routers.
    """
    from peft import LoraConfig, get_peft_model

    one = copy.deepcopy(config)
    text = one.get_text_config()
    layers, text.num_hidden_layers = text.num_hidden_layers, 1
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:1]
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(AutoModelForCausalLM.from_config(one), LoraConfig(r=r, target_modules="all-linear"))
    return layers * sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def measure(config: PretrainedConfig, name: str = "", lora_r: int = 0) -> Shape:
    """Count parameters exactly on the meta device; read the sizes the activation formulae need."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config()
    unit_classes = set(getattr(model, "_no_split_modules", None) or ())
    units = [m for m in model.modules() if type(m).__name__ in unit_classes]
    layer = max(units, key=lambda m: sum(p.numel() for p in m.parameters()))
    head = model.get_output_embeddings()
    tail = {id(p): p for p in head.parameters()}
    norm = getattr(model.get_decoder(), "norm", None)
    if norm is not None:
        tail.update({id(p): p for p in norm.parameters()})
    heads = text.num_attention_heads
    return Shape(
        name=name or getattr(text, "_name_or_path", "") or type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        layer_params=sum(p.numel() for p in layer.parameters()),
        tail_params=sum(p.numel() for p in tail.values()),
        lora_params=lora_params(config, lora_r) if lora_r else 0,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
        intermediate=getattr(text, "moe_intermediate_size", None) or text.intermediate_size,
        experts_per_token=getattr(text, "num_experts_per_tok", None) or 1,
        vocab=text.vocab_size,
    )


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mistral-7b", help=f"{', '.join(SHAPES)} or a folder with config.json")
    p.add_argument("--gpus", type=int, default=8, help="GPUs on the machine (processes under accelerate launch)")
    p.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory of one GPU, GiB")
    p.add_argument("--overhead-gib", type=float, default=2.0, help="per GPU: CUDA context, NCCL, allocator slack")
    g = p.add_argument_group("generation")
    g.add_argument("--tp", type=int, default=1, help="vLLM tensor_parallel_size")
    g.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM gpu_memory_utilization")
    g.add_argument("--gen-batch", type=int, default=64, help="sequences generated at once")
    g.add_argument("--prompt-len", type=int, default=None, help="prompt tokens (default: --prefix-len)")
    g.add_argument("--new-tokens", type=int, default=350, help="max_new_tokens")
    t = p.add_argument_group("training and scoring")
    t.add_argument("--fsdp", type=int, default=None, help="FSDP shards (default: --gpus)")
    t.add_argument("--optim", choices=list(OPTIM_STATES), default="adamw")
    t.add_argument("--lora-r", type=int, default=16, help="LoRA rank of the LoRA row (0: no LoRA row)")
    t.add_argument("--lora-base-dtype", choices=["fp32", "bf16"], default="fp32", help="frozen base weights")
    t.add_argument("--batch", type=int, default=2, help="queries per device per micro-batch")
    t.add_argument("--C", type=int, default=2, help="constitutions per query")
    t.add_argument("--prefix-len", type=int, default=512, help="tokens of constitution + query (longest)")
    t.add_argument("--response-len", type=int, default=350, help="tokens of one response (longest)")
    t.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    t.add_argument("--eval-batch", type=int, default=8, help="per_device_eval_batch_size of held-out scoring")
    return p


def kv_bytes_per_token(s: Shape, tp: int) -> float:
    return 2 * s.layers * -(-s.kv_heads // tp) * s.head_dim * 2  # KV heads are replicated when tp > kv_heads


def saved_per_token_layer(s: Shape) -> int:
    """Bytes one decoder layer saves for backward per token (bf16 compute; K/V repeated to the query heads)."""
    q = s.heads * s.head_dim
    moe = 4 * s.experts_per_token * s.hidden if s.experts_per_token > 1 else 0
    return 16 * s.hidden + 8 * q + 8 * s.experts_per_token * s.intermediate + moe


def train_activations(s: Shape, a: argparse.Namespace, checkpointing: bool) -> float:
    rows, T = a.batch * a.C, a.prefix_len + a.C * a.response_len
    tokens = rows * T
    layer = saved_per_token_layer(s)
    per_token = s.layers * 2 * s.hidden + layer if checkpointing else s.layers * layer
    return tokens * (per_token + 8 * s.hidden) + rows * T * T  # + final norm, + the bool block mask


def plan(s: Shape, a: argparse.Namespace) -> list[Row]:
    gpu, extra = a.gpu_memory_gib, a.overhead_gib
    S = a.fsdp or a.gpus
    m = OPTIM_STATES[a.optim]
    prompt = a.prompt_len or a.prefix_len
    seq = prompt + a.new_tokens

    def row(key: str, stage: str, lives: str, step_temp: float = 0.0, **parts: float) -> Row:
        """GiB per GPU: the sum of the parts, or the optimizer step's peak (sharded + step_temp) if larger."""
        parts = {k: v / GIB for k, v in parts.items()}
        peak = sum(parts.values())
        if step_temp:
            parts["step_temp"] = step_temp / GIB
            peak = max(peak, parts.get("sharded", 0.0) + parts["step_temp"])
        return Row(key, stage, lives, peak + extra, gpu, parts)

    rows = []
    # generation
    kv_tp = kv_bytes_per_token(s, a.tp)
    weights_tp = 2 * s.params / a.tp
    rows.append(row("vllm", f"generate: vLLM tp={a.tp}", f"bf16 weights / {a.tp}, KV of {a.gen_batch} x {seq} tokens",
                    weights=weights_tp, kv=a.gen_batch * seq * kv_tp))
    reserve = a.gpu_memory_utilization * gpu
    pool = reserve - weights_tp / GIB - extra
    fits_seqs = max(0, int(pool * GIB // (kv_tp * seq)))
    rows.append(Row("vllm_reserve", f"generate: vLLM reservation ({a.gpu_memory_utilization:g})",
                    f"KV pool {pool:.1f} GiB = {fits_seqs} sequences of {seq} tokens", reserve, gpu,
                    {"reserved": reserve}, ok=fits_seqs >= 1))
    rows.append(row("hf", "generate: HF generate", f"full bf16 copy per process, KV of {a.gen_batch} x {seq} tokens",
                    weights=2 * s.params, kv=a.gen_batch * seq * kv_bytes_per_token(s, 1)))
    rows.append(row("naive", "load: naive fp32 copy", "full fp32 copy per process before sharding",
                    weights=4 * s.params))
    # training
    act = train_activations(s, a, a.grad_checkpointing)
    head = 14 * HEAD_CHUNK
    gathered = 2 * (s.tail_params + 2 * s.layer_params)
    unsharded_grads = 2 * max(s.layer_params, s.tail_params)
    ckpt = "ckpt" if a.grad_checkpointing else "no ckpt"
    rows.append(row("full", f"train: FSDP/{S} full, {a.optim}",
                    f"fp32 params+grads+{m} states / {S}, gathered, acts ({ckpt})",
                    step_temp=OPTIM_TEMP[a.optim] * s.params / S, sharded=s.params * (8 + 4 * m) / S,
                    gathered=gathered + unsharded_grads, activations=act, head_chunk=head))
    host = s.params * (8 + 4 * m) / GIB
    rows.append(row("offload", f"train: FSDP/{S} + CPU offload",
                    f"states in host RAM ({host:.0f} GiB in all), gathered, acts",
                    gathered=gathered + unsharded_grads + 2 * 4 * s.layer_params / S, activations=act,
                    head_chunk=head))
    if a.lora_r:
        n_lora = s.lora_params
        base = 4 if a.lora_base_dtype == "fp32" else 2
        rows.append(row("lora", f"train: FSDP/{S} LoRA r={a.lora_r}",
                        f"{a.lora_base_dtype} base / {S}, {n_lora / 1e6:.0f}M adapter params, gathered, acts",
                        step_temp=OPTIM_TEMP[a.optim] * n_lora / S,
                        sharded=(s.params * base + n_lora * (8 + 4 * m)) / S,
                        gathered=gathered, activations=act, head_chunk=head))
    # held-out scoring
    eval_rows, T = a.eval_batch * a.C, a.prefix_len + a.C * a.response_len
    transient = eval_rows * T * (6 * s.hidden + 6 * s.intermediate) + eval_rows * T * T
    rows.append(row("score", f"score: held-out, fp32 / {S}",
                    f"fp32 weights / {S}, gathered, {eval_rows} rows x {T} forward",
                    sharded=4 * s.params / S, gathered=gathered, activations=transient, head_chunk=10 * HEAD_CHUNK))
    return rows


def verdict(s: Shape, a: argparse.Namespace, rows: list[Row]) -> str:
    by = {r.key: r for r in rows}
    gen, full, offload, lora, score = by["vllm"], by["full"], by["offload"], by.get("lora"), by["score"]

    def say(r: Row) -> str:
        tight = " (tight)" if r.fits and r.headroom < TIGHT * r.gpu_gib else ""
        return f"{r.gib:.1f} GiB/GPU, {'fits' + tight if r.fits else 'does NOT fit'}"

    gen_ok = by["vllm_reserve"].fits and gen.fits
    parts = [f"generation (vLLM tp={a.tp}) {say(gen)}" + ("" if gen_ok else ", raise --tp")]
    parts.append(f"full fine-tuning ({full.stage.split(': ')[1]}) {say(full)}")
    if not full.fits or full.headroom < TIGHT * full.gpu_gib:
        host = s.params * (8 + 4 * OPTIM_STATES[a.optim]) / GIB
        parts.append(f"with CPU offload {say(offload)} + {host:.0f} GiB host RAM")
        if lora is not None:
            parts.append(f"LoRA r={a.lora_r} {say(lora)}")
    parts.append(f"held-out scoring {say(score)}")
    return f"VERDICT {s.name}, {count(s.params)} params, {a.gpus} x {a.gpu_memory_gib:g} GiB: " + "; ".join(parts)


def count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def table(rows: list[Row]) -> str:
    lines = ["| stage | what lives there | GiB per GPU | GPU GiB | fits | headroom |", "|---|---|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r.stage} | {r.lives} | {r.gib:.1f} | {r.gpu_gib:g} | {'yes' if r.fits else 'NO'} "
                     f"| {r.headroom:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = make_parser()
    a = parser.parse_args(argv)
    if not 1 <= a.tp <= a.gpus or not 1 <= (a.fsdp or a.gpus) <= a.gpus:
        parser.error("--tp and --fsdp must be between 1 and --gpus")
    s = measure(load_config(a.model), a.model if a.model in SHAPES else Path(a.model).name, a.lora_r)
    rows = plan(s, a)
    S = a.fsdp or a.gpus
    T = a.prefix_len + a.C * a.response_len
    print(f"\n{s.name}: {s.params:,} params ({count(s.params)}), {s.layers} layers, largest FSDP unit "
          f"{count(s.layer_params)}, tail {count(s.tail_params)}; {a.gpus} GPUs x {a.gpu_memory_gib:g} GiB, "
          f"FSDP over {S}, {a.optim}; training micro-batch {a.batch} x C={a.C} rows of {T} tokens\n")
    print(table(rows))
    full = next(r for r in rows if r.key == "full")
    p = full.parts
    run = p["sharded"] + p["gathered"] + p["activations"] + p["head_chunk"]
    print(f"\nfull fine-tuning, GiB/GPU: sharded states {p['sharded']:.1f} + gathered units {p['gathered']:.1f} + "
          f"activations {p['activations']:.1f} + head chunk {p['head_chunk']:.1f} = {run:.1f} (forward/backward); "
          f"sharded states + step temporaries {p['step_temp']:.1f} = {p['sharded'] + p['step_temp']:.1f} (optimizer "
          f"step); + overhead {a.overhead_gib:g}. Activations without checkpointing "
          f"{train_activations(s, a, False) / GIB:.1f}, with {train_activations(s, a, True) / GIB:.1f}")
    print(verdict(s, a, rows))


if __name__ == "__main__":
    main()
