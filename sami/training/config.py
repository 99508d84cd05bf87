"""SAMIConfig: the training arguments of :class:`~sami.training.SAMITrainer`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from transformers import TrainingArguments
from transformers.utils import is_torch_bf16_gpu_available

from sami.errors import ConfigError
from sami.objective.logprobs import AGGREGATIONS, LAYOUTS, check_aggregation, check_layout
from sami.objective.loss import check_loss_settings

logger = logging.getLogger(__name__)


@dataclass
class SAMIConfig(TrainingArguments):
    r"""Configuration of :class:`~sami.training.SAMITrainer`.

    Only the SAMI-specific parameters are listed here; every other field is a
    [`~transformers.TrainingArguments`] field (batch sizes, optimiser, FSDP/DeepSpeed, logging, ...).
    The defaults are the paper's (Fränken et al. 2024, arXiv 2404.14313) where the paper states one.

    Using [`~transformers.HfArgumentParser`] (or ``sami train``) every field is a command-line flag.

    Parameters:
        > Parameters that control the objective

        aggregation (`str`, *optional*, defaults to `"mean"`):
            How a response's token log-probabilities become one entry of the C x C matrix: `"mean"` (per token,
            length-normalised; paper) or `"sum"` (the sequence log-probability).
        score_eos (`bool`, *optional*, defaults to `False`):
            Append the tokenizer's EOS token to every response and score it. The paper masks it (False).
        row_weight (`float`, *optional*, defaults to `0.5`):
            Weight of the row cross-entropy ("which response was written under constitution i"). Paper: 0.5.
        col_weight (`float`, *optional*, defaults to `0.5`):
            Weight of the column cross-entropy ("which constitution wrote response j"). Paper: 0.5; a later
            ablation found column-only (0/1) at least as good.
        loss_temperature (`float`, *optional*, defaults to `1.0`):
            The softmaxes see `logp / temperature`. Paper: 1.0.
        layout (`str`, *optional*, defaults to `"auto"`):
            How the C x C matrix is computed: `"plain"` (one padded row per (constitution, response) pair),
            `"shared"` (one row per constitution holding all C responses, each attending to the prompt and itself),
            or `"auto"` (the fastest one the model supports). All give the same matrix.
        kl_coef (`float`, *optional*, defaults to `0.0`):
            Weight of a KL penalty to the reference model, the weights training starts from (the base model, or
            iteration t-1's with `continue_from_previous`): the loss becomes `SAMI loss + kl_coef * KL`, the KL per
            token of each matched response under its own constitution (k3 estimator). With LoRA the reference is
            the model with its adapter disabled (one extra forward pass per step); with full fine-tuning a frozen
            copy of the starting weights (twice the weight memory; not under FSDP or DeepSpeed). The paper's
            option, which it left at 0.

        > Parameters that control the data

        shuffle_principles (`bool`, *optional*, defaults to `True`):
            Shuffle the order of each constitution's principles in the training prompts (augmentation, as the
            paper). The order is seeded by (`seed`, query id, epoch), so every process and a resumed run see the
            same prompts.
        max_prompt_length (`int` or `None`, *optional*, defaults to `None`):
            Longest prompt (constitution + query) in tokens; a longer one is an error naming its query, never
            silently truncated. `None`: no limit.
        max_response_length (`int` or `None`, *optional*, defaults to `None`):
            Truncate responses to this many tokens (EOS, when scored, is then not appended). `None`: no limit.

        > Parameters that control LoRA

        use_lora (`bool`, *optional*, defaults to `False`):
            Train a LoRA adapter (peft) instead of all weights. The paper fine-tuned all weights.
        lora_r (`int`, *optional*, defaults to `16`):
            LoRA rank.
        lora_alpha (`float`, *optional*, defaults to `32`):
            LoRA scaling numerator (the update is scaled by `lora_alpha / lora_r`).
        lora_dropout (`float`, *optional*, defaults to `0.0`):
            Dropout on the LoRA input.
        lora_target_modules (`str`, *optional*, defaults to `"all-linear"`):
            Modules that get an adapter: `"all-linear"` or a comma-separated list of module names
            (`"q_proj,v_proj"`).
        merge_lora_on_save (`bool`, *optional*, defaults to `True`):
            `save_model` merges the adapter into the base weights and writes a plain Hugging Face checkpoint that
            loads without peft (the adapter is kept in `adapter/` beside it); `False` saves the adapter alone (peft's
            files). Either way the folder gets the SAMI model card (`README.md`), and `push_to_hub` uploads that
            folder as it was saved (docs/hub.md). Intermediate checkpoints keep the adapter only, so
            `resume_from_checkpoint` works.

    NOTE: defaults that differ from `TrainingArguments`:
        - `learning_rate=5e-7` (paper; 1e-6 for llama3-70b), `lr_scheduler_type="constant"` and `warmup_steps=0`:
          with any warmup, Hugging Face schedules run the first optimiser step at learning rate 0, as the paper's
          code did by accident; SAMI trains for a handful of steps, so that step matters.
        - `bf16=None`: resolved to True on a GPU with bfloat16 support and False elsewhere (CPU trains in
          float32: CPU bf16 autocast works but is slower than float32 on most CPUs). bf16 here is *autocast*:
          load the model in float32 so the optimiser keeps float32 master weights (an update of lr 5e-7 vanishes
          in bfloat16 weights, the paper's second pitfall). Pass `--bf16 true --use_cpu true` to autocast on CPU.
        - `num_train_epochs=1`: the number of steps is the regulariser (paper: 2, 4, 6 steps; training longer
          produces gibberish). Set `max_steps` for an exact count.
        - `logging_steps=1`, `save_strategy="no"` (`save_model` writes the result; set `"steps"` to checkpoint for
          `resume_from_checkpoint`), `remove_unused_columns=False` (the collator needs the records' raw fields),
          `report_to="none"`.
    """

    # --- objective ---
    aggregation: str = field(
        default="mean",
        metadata={"help": "Response score: 'mean' per-token log-prob (paper) or 'sum'.", "choices": [*AGGREGATIONS]},
    )
    score_eos: bool = field(
        default=False, metadata={"help": "Append and score the EOS token after each response (paper: False)."}
    )
    row_weight: float = field(default=0.5, metadata={"help": "Weight of the row cross-entropy (paper: 0.5)."})
    col_weight: float = field(default=0.5, metadata={"help": "Weight of the column cross-entropy (paper: 0.5)."})
    loss_temperature: float = field(
        default=1.0, metadata={"help": "Softmax temperature on the log-prob matrix (paper: 1.0)."}
    )
    kl_coef: float = field(
        default=0.0,
        metadata={"help": "Weight of the KL penalty to the starting weights, per token of the matched responses "
                  "(paper: 0)."},
    )
    layout: str = field(
        default="auto",
        metadata={
            "help": "C x C matrix layout: 'auto', 'plain' or 'shared' (same values).",
            "choices": ["auto", *LAYOUTS],
        },
    )

    # --- data ---
    shuffle_principles: bool = field(
        default=True,
        metadata={"help": "Shuffle principle order per (seed, query, epoch) as augmentation (paper: True)."},
    )
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Reject prompts longer than this many tokens (None: no limit)."}
    )
    max_response_length: int | None = field(
        default=None, metadata={"help": "Truncate responses to this many tokens (None: no limit)."}
    )

    # --- LoRA ---
    use_lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter (paper: full fine-tuning)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=32.0, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "'all-linear' or a comma-separated list of module names that get an adapter."},
    )
    merge_lora_on_save: bool = field(
        default=True,
        metadata={"help": "save_model (and --push_to_hub) writes the merged weights as a plain HF checkpoint, adapter "
                  "kept in adapter/; false: the adapter alone."},
    )

    # --- changed TrainingArguments defaults ---
    learning_rate: float = field(default=5e-7, metadata={"help": "Learning rate (paper: 5e-7; 1e-6 for llama3-70b)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Scheduler (paper: constant)."})
    warmup_steps: float = field(
        default=0, metadata={"help": "Warmup steps (0: HF warmup runs the first step at learning rate 0)."}
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the generated data (paper: 1)."})
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 autocast over float32 weights; None: on when the GPU supports it, off on CPU."},
    )
    logging_steps: float = field(default=1, metadata={"help": "Log every N optimiser steps."})
    save_strategy: str = field(
        default="no", metadata={"help": "Checkpoint strategy ('no': only save_model writes the result)."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the collator reads the records' raw fields."}
    )
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Integrations to report to ('none', 'tensorboard', 'wandb', ...)."}
    )

    def __post_init__(self) -> None:
        if self.bf16 is None:
            self.bf16 = bool(not self.fp16 and not self.use_cpu and is_torch_bf16_gpu_available())
        check_aggregation(self.aggregation)
        check_layout(self.layout, auto=True)
        check_loss_settings(
            self.row_weight, self.col_weight, self.loss_temperature, temperature_name="loss_temperature"
        )
        if not self.kl_coef >= 0:
            raise ConfigError(f"kl_coef={self.kl_coef}: set it >= 0 (0: no KL penalty, the paper's choice)")
        for name in ("max_prompt_length", "max_response_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value}: set it to a positive number of tokens, or None for no limit")
        if self.use_lora:
            if self.lora_r < 1:
                raise ValueError(f"lora_r={self.lora_r}: the LoRA rank must be >= 1 (e.g. 16)")
            if not self.lora_alpha > 0:
                raise ValueError(f"lora_alpha={self.lora_alpha}: set lora_alpha > 0 (e.g. 2 * lora_r)")
            if not 0 <= self.lora_dropout < 1:
                raise ValueError(f"lora_dropout={self.lora_dropout}: set it in [0, 1)")
            if not self.target_modules:
                raise ValueError("lora_target_modules is empty: use 'all-linear' or names such as 'q_proj,v_proj'")
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True would strip the records' fields before the SAMI collator sees them; "
                "set remove_unused_columns=False"
            )
        if self.warmup_steps and self.warmup_steps > 0:
            logger.warning(
                "warmup_steps=%s: Hugging Face warmup schedules run the first optimiser step at learning rate 0; "
                "SAMI trains for few steps (paper: 2-6), so that step is lost. Set warmup_steps=0 unless intended.",
                self.warmup_steps,
            )
        super().__post_init__()

    @property
    def target_modules(self) -> str | list[str]:
        """``lora_target_modules`` as peft wants it: ``"all-linear"`` or a list of names."""
        value = self.lora_target_modules
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        value = str(value).strip()
        if value == "all-linear":
            return value
        return [name.strip() for name in value.split(",") if name.strip()]
