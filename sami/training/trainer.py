"""SAMITrainer: the SAMI objective on top of ``transformers.Trainer``.

Accelerate, FSDP, DeepSpeed, ``report_to`` logging, checkpointing and resume come from the
Trainer; this file adds the loss (two calls into :mod:`sami.objective`), its metrics, exact
gradient accumulation, LoRA merged on save, and the SAMI model card that ``save_model`` writes and
``push_to_hub`` uploads (:mod:`sami.hub`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback, set_seed

from sami.errors import ConfigError
from sami.hub import (
    ADAPTER_FILES,
    PAPER,
    TAGS,
    ModelCardInfo,
    create_repo,
    principles_of_records,
    upload_model,
    write_model_card,
)
from sami.objective import contrastive_matrix, reference_kl, resolve_layout, response_token_logprobs, sami_loss
from sami.training.collator import SAMICollator
from sami.training.config import SAMIConfig
from sami.training.dataset import SAMIDataset, as_dataset
from sami.training.lora import ADAPTER_SUBDIR, add_lora, is_peft_model, merge_lora_checkpoint, save_merged

logger = logging.getLogger(__name__)

# logged key -> SAMILossOutput field (one value per query) or None (mean response length); averaged over queries
METRICS = {
    "mi/bound": "mi_bound",
    "mi/bound_rows": "mi_bound_rows",
    "mi/bound_cols": "mi_bound_cols",
    "accuracy/rows": "accuracy_rows",
    "accuracy/cols": "accuracy_cols",
    "logps/margin": "margin",
    "logps/matched": "logp_matched",
    "logps/mismatched": "logp_mismatched",
    "length/response": None,  # mean response length in tokens, from the batch
}
KL_METRIC = "kl"
"""Logged with ``kl_coef > 0``: the mean per-token KL of the matched responses from the reference model."""


class _ShuffleEpoch(TrainerCallback):
    """Tells the collator which epoch starts, so the principle order is seeded by (seed, query, epoch)."""

    def __init__(self, collator: SAMICollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # at the start of epoch k, state.epoch == k (fresh) or k + fraction done (resumed mid-epoch)
        self.collator.epoch = math.floor((state.epoch or 0.0) + 1e-6)


class SAMITrainer(Trainer):
    r"""Trainer for SAMI (Self-Supervised Alignment with Mutual Information).

    Paper: Fränken, Zelikman, Rafailov, Gandhi, Gerstenberg, Goodman, "Self-Supervised Alignment with
    Mutual Information: Learning to Follow Principles without Preference Labels", NeurIPS 2024,
    https://huggingface.co/papers/2404.14313.

    For every query x of a micro-batch with constitutions c_1..c_C and responses y_1..y_C, the trainer
    computes ``L[i, j] = log p(y_j | c_i, x)`` (:func:`~sami.objective.contrastive_logprobs`) and minimises
    ``row_weight * CE_rows + col_weight * CE_cols`` (:func:`~sami.objective.sami_loss`), which maximises an
    InfoNCE lower bound on I(y; c | x); with ``args.kl_coef > 0`` plus ``kl_coef`` times the KL of the matched
    responses from the reference model (:func:`~sami.objective.reference_kl`).

    Example:

    ```python
    >>> from sami.models import load_model
    >>> from sami.training import SAMIConfig, SAMITrainer
    >>> model, tokenizer = load_model("smollm2-135m", dtype="float32")  # fp32 master weights
    >>> args = SAMIConfig(output_dir="sami-smollm2", max_steps=2, per_device_train_batch_size=4)
    >>> trainer = SAMITrainer(model, args, train_dataset="generations.jsonl", processing_class=tokenizer)
    >>> trainer.train()  # doctest: +SKIP
    >>> trainer.save_model()  # a plain HF checkpoint (LoRA merged) and its model card in args.output_dir
    >>> trainer.push_to_hub()  # doctest: +SKIP
    ```

    Args:
        model (`PreTrainedModel` or `str`):
            The model to train, loaded in float32 (bf16 autocast comes from ``args.bf16``), or a model spec for
            :func:`sami.models.load_for_training` (embedded name, folder, ``.gguf`` or hub id), loaded in float32;
            under FSDP or DeepSpeed ZeRO-3 it stays off the accelerator until the Trainer shards it.
        args (`SAMIConfig`, *optional*):
            Training configuration; defaults to ``SAMIConfig(output_dir="sami-output")``.
        train_dataset / eval_dataset:
            Generation records: a :class:`~sami.training.SAMIDataset`, a list of record dicts, the path of a
            generations JSONL file, or any map-style dataset of records (``eval_dataset`` also a dict of them).
        processing_class (`PreTrainedTokenizerBase`):
            The tokenizer (required unless ``model`` is a spec).
        data_collator (*optional*):
            Defaults to a :class:`~sami.training.SAMICollator` configured from ``args``.
        peft_config (`peft.PeftConfig`, *optional*):
            An adapter configuration; overrides the ``lora_*`` fields (``use_lora`` is then implied).
        ref_model (`PreTrainedModel`, *optional*):
            The reference of the KL penalty (``args.kl_coef > 0``). Default: the model with its adapter disabled
            under LoRA, else a frozen copy of the model as training starts.
        callbacks, optimizers, optimizer_cls_and_kwargs, ...:
            As for ``transformers.Trainer``.
    """

    _tag_names = TAGS
    _name = "SAMI"
    _paper = PAPER
    # compute_loss divides by the number of queries in the whole accumulated (and distributed) batch itself
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: SAMIConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        data_collator=None,
        callbacks: list[TrainerCallback] | None = None,
        peft_config=None,
        ref_model: PreTrainedModel | None = None,
        **kwargs,
    ):
        args = args if args is not None else SAMIConfig(output_dir="sami-output")
        if not isinstance(args, SAMIConfig):
            raise TypeError(f"args must be a SAMIConfig, got {type(args).__name__}: build one with SAMIConfig(...)")
        self.base_model: str | None = model if isinstance(model, str) else _name_or_path(model)
        """The model trained from, as the model card names it: the spec given, else the folder or hub id it was
        loaded from."""
        self.command: str | None = None
        """The command line that trains this model, shown on the model card (``sami train`` sets it)."""
        self._saved_dir: str | None = None  # the folder the last final save_model wrote: what push_to_hub uploads
        if isinstance(model, str):
            from sami.models import load_for_training

            # off the accelerator under FSDP/ZeRO-3 (the prepare step shards it), else on the process's device
            model, tokenizer = load_for_training(model, args, dtype="float32")
            processing_class = processing_class if processing_class is not None else tokenizer
        if processing_class is None:
            raise ValueError("SAMITrainer needs the tokenizer: pass processing_class=tokenizer")
        if processing_class.pad_token_id is None:
            processing_class.pad_token = processing_class.eos_token
        if args.use_lora or peft_config is not None:
            if not is_peft_model(model):
                set_seed(args.seed)  # the adapter's initialisation follows args.seed (as Trainer seeds model_init)
                model = add_lora(model, peft_config if peft_config is not None else args)
        elif is_peft_model(model):
            logger.info("sami: the model already carries a peft adapter; training it")
        if hasattr(model, "add_model_tags"):  # as TRL's trainers: model.push_to_hub() tags it too
            model.add_model_tags(list(self._tag_names))
        _warn_low_precision(model)

        self.layout = resolve_layout(model, args.layout)
        if data_collator is None:
            data_collator = SAMICollator(
                processing_class,
                layout=self.layout,
                score_eos=args.score_eos,
                shuffle_principles=args.shuffle_principles,
                seed=args.data_seed if args.data_seed is not None else args.seed,
                max_prompt_length=args.max_prompt_length,
                max_response_length=args.max_response_length,
            )
        train_dataset, eval_dataset = as_dataset(train_dataset), as_dataset(eval_dataset)
        _preflight(train_dataset, args.per_device_train_batch_size, data_collator)
        for dataset in eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]:
            _preflight(dataset, args.per_device_eval_batch_size, data_collator)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        if self.args.n_gpu > 1:
            raise ValueError(
                f"{self.args.n_gpu} GPUs in one process (torch DataParallel) is not supported: launch one process per "
                "GPU with `accelerate launch` or `torchrun`"
            )
        if isinstance(data_collator, SAMICollator):
            self.add_callback(_ShuffleEpoch(data_collator))
            if args.dataloader_persistent_workers and args.shuffle_principles:
                logger.warning(
                    "dataloader_persistent_workers=True keeps the first epoch's collator in the workers, so the "
                    "principle order is not reshuffled in later epochs"
                )
        self._metrics: dict[str, defaultdict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        self._throughput_start: float | None = None
        self.ref_model = self._reference_model(ref_model)
        """The KL penalty's frozen reference; None without the penalty and under LoRA (the adapter is disabled)."""

    def _reference_model(self, ref_model: PreTrainedModel | None) -> PreTrainedModel | None:
        if self.args.kl_coef == 0:
            if ref_model is not None:
                raise ConfigError("ref_model is used by the KL penalty only: set kl_coef > 0, or leave ref_model out")
            return None
        if ref_model is None and is_peft_model(self.model):
            return None
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise ConfigError(
                "kl_coef > 0 with full fine-tuning under FSDP or DeepSpeed: sami does not shard a reference copy; "
                "train a LoRA adapter (--use_lora true: the reference is then the model with its adapter disabled), "
                "or set kl_coef 0"
            )
        reference = ref_model if ref_model is not None else copy.deepcopy(self.model)
        reference.eval().requires_grad_(False)
        return self.accelerator.prepare_model(reference, evaluation_mode=True)

    # ------------------------------------------------------------------------------------------ the loss

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Fetch the micro-batches of one optimiser step and count their queries over all processes.

        The count becomes ``num_items_in_batch``: ``compute_loss`` divides each micro-batch's summed loss
        by it, so the accumulated gradient is the gradient of the mean loss over the whole batch, also when
        micro-batches differ in size (the last one of an epoch).
        """
        batch_samples, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        queries = sum(int(batch["response_lengths"].shape[0]) for batch in batch_samples)
        count = torch.tensor([queries], dtype=torch.long, device=self.args.device)
        if self.accelerator.num_processes > 1:
            count = self.accelerator.gather(count)  # (world,)
        return batch_samples, count.sum()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The SAMI loss of one micro-batch.

        Training: ``loss = sum of the per-query losses * world_size / num_items_in_batch``, the number of queries
        in the accumulated batch of all processes. Summed over micro-batches and averaged over processes
        (DDP/FSDP/DeepSpeed average gradients), this is exactly the gradient of the mean loss over all queries of
        the optimiser step.
        """
        mode = "train" if model.training else "eval"
        token_logp = response_token_logprobs(model, inputs)  # (N,)
        logp = contrastive_matrix(token_logp, inputs, self.args.aggregation)  # (B, C, C)
        out = sami_loss(logp, self.args.row_weight, self.args.col_weight, self.args.loss_temperature)  # (B,) each
        per_query, kl = out.loss, None
        if self.args.kl_coef > 0:
            B, C = inputs["response_lengths"].shape
            kl = reference_kl(token_logp, self._reference_logprobs(model, inputs), inputs["token_cells"], C, B)
            per_query = per_query + self.args.kl_coef * kl  # (B,)
        if mode == "train" and num_items_in_batch is not None:
            loss = per_query.sum() * self.accelerator.num_processes / num_items_in_batch
        elif mode == "train":  # called outside the Trainer's loop: equal micro-batches assumed
            loss = per_query.mean() / self.args.gradient_accumulation_steps
        else:
            loss = per_query.mean()
        self._record_metrics(mode, out, inputs, kl)
        return (loss, {"logp": logp.detach()}) if return_outputs else loss

    def _reference_logprobs(self, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) the response tokens' log-probs under the reference: ``ref_model``, or ``model`` without its adapter."""
        with torch.no_grad():
            if self.ref_model is not None:
                return response_token_logprobs(self.ref_model, inputs)
            with self.accelerator.unwrap_model(model).disable_adapter():
                return response_token_logprobs(model, inputs)

    def _record_metrics(self, mode: str, out, inputs: dict[str, torch.Tensor], kl: torch.Tensor | None) -> None:
        """Append sums over queries of the loss statistics (and the KL), gathered over processes."""
        if mode == "train" and self._throughput_start is None:
            self._throughput_start = time.perf_counter()
        with torch.no_grad():
            lengths = inputs["response_lengths"].float().mean(1)  # (B,)
            values = [lengths if field is None else getattr(out, field) for field in METRICS.values()]
            keys = [*METRICS, KL_METRIC] if kl is not None else [*METRICS]
            values += [kl.detach()] if kl is not None else []
            mask = inputs["attention_mask"] if "attention_mask" in inputs else inputs["segment_ids"] >= 0
            device = out.loss.device
            stats = torch.stack([v.to(device).float().sum() for v in values])  # (K,) sums over the B queries
            counts = [len(lengths), mask.sum().item()]  # queries, tokens
            extra = torch.tensor(counts, dtype=torch.float32, device=device)
            row = torch.cat([stats, extra])[None]  # (1, K + 2)
            total = self.accelerator.gather(row).sum(0).tolist()  # (K + 2,) over processes
        for key, value in zip([*keys, "_queries", "_tokens"], total):
            self._metrics[mode][key].append(value)

    # ------------------------------------------------------------------------------------------ evaluation

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss (and metrics) of an evaluation batch; predictions are the (B, C, C) matrix, labels its diagonal."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        loss = loss.detach()
        if prediction_loss_only:
            return loss, None, None
        logp = outputs["logp"]  # (B, C, C)
        B, C, _ = logp.shape
        labels = torch.arange(C, device=logp.device).expand(B, C)  # (B, C): response i belongs to c_i
        return loss, logp, labels

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """``Trainer.evaluate`` with the principle shuffle off; returns ``eval_loss``, ``eval_mi/bound``, ...."""
        collator = self.data_collator
        was_training = getattr(collator, "training", None)
        if was_training is not None:
            collator.training = False
        try:
            return super().evaluate(as_dataset(eval_dataset), ignore_keys, metric_key_prefix)
        finally:
            if was_training is not None:
                collator.training = was_training
            self._throughput_start = None  # evaluation time does not count against training throughput

    # ------------------------------------------------------------------------------------------ logging

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged SAMI metrics to ``logs`` (``eval_``-prefixed in evaluation), log, and clear them.

        ``logs`` is updated in place, so ``Trainer.evaluate`` returns the SAMI metrics too.
        """
        mode = "train" if self.model.training else "eval"
        stored = self._metrics[mode]
        metrics: dict[str, float] = {}
        queries = sum(stored.get("_queries", []))
        if queries > 0:
            for key in (k for k in stored if not k.startswith("_")):
                metrics[key] = sum(stored[key]) / queries
            if mode == "train" and self._throughput_start is not None:
                elapsed = time.perf_counter() - self._throughput_start
                metrics["tokens_per_second"] = sum(stored["_tokens"]) / max(elapsed, 1e-9)
                self._throughput_start = time.perf_counter()
        if mode == "eval":
            prefix = next((k[: -len("_loss")] for k in logs if k.endswith("_loss")), "eval")
            metrics = {f"{prefix}_{key}": value for key, value in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)
        stored.clear()

    # ------------------------------------------------------------------------------------------ saving

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model with its SAMI model card (``README.md``); push it when ``args.push_to_hub``.

        With LoRA, ``merge_lora_on_save`` chooses what is saved: True writes the merged weights (float32) and the
        tokenizer to ``output_dir``, which then loads with ``AutoModelForCausalLM.from_pretrained`` and no peft, and
        the adapter to ``output_dir/adapter``; False writes the adapter (peft's files) to ``output_dir``. Checkpoints
        written during training (``_internal_call``) keep the adapter only, so ``resume_from_checkpoint`` works, and
        are never pushed from here.
        """
        if _internal_call:
            return super().save_model(output_dir, _internal_call=True)
        self._save_final(output_dir if output_dir is not None else self.args.output_dir)
        if self.args.push_to_hub:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _save_final(self, output_dir: str) -> None:
        """Write the model (merged, adapter or full) and its card to ``output_dir``; remember it for the push."""
        if self._lora_weights() == "merged":
            self._save_merged(output_dir)
        else:
            super().save_model(output_dir, _internal_call=True)  # save_model pushes, with the card
        self._saved_dir = output_dir
        self.create_model_card(output_dir=output_dir)
        self.accelerator.wait_for_everyone()

    def _save_merged(self, output_dir: str) -> None:
        adapter_dir = os.path.join(output_dir, ADAPTER_SUBDIR)
        quantized = getattr(self.accelerator.unwrap_model(self.model).get_base_model(), "hf_quantizer", None) is not None
        if self.is_fsdp_enabled or self.is_deepspeed_enabled or quantized:
            # every process takes part in gathering the adapter; the main one merges from disk (QLoRA: into the
            # full-precision base on CPU, not into the 4/8-bit weights, which would lose the update)
            super().save_model(adapter_dir, _internal_call=True)
            if self.args.should_save:
                merge_lora_checkpoint(adapter_dir, output_dir)
        elif self.args.should_save:
            model = self.accelerator.unwrap_model(self.model)
            model.save_pretrained(adapter_dir)
            save_merged(model, output_dir, self.processing_class)
            torch.save(self.args, os.path.join(output_dir, "training_args.bin"))
        if self.args.should_save:
            for name in ADAPTER_FILES:  # an adapter at the root (an earlier adapter save) would shadow the weights
                Path(output_dir, name).unlink(missing_ok=True)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

    def _lora_weights(self) -> str:
        """What ``save_model`` writes: ``merged`` or ``adapter`` (LoRA, by ``merge_lora_on_save``), else ``full``."""
        if not is_peft_model(self.accelerator.unwrap_model(self.model)):
            return "full"
        return "merged" if self.args.merge_lora_on_save else "adapter"

    # ------------------------------------------------------------------------------------------ the Hub

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
        output_dir: str | None = None,
    ) -> None:
        """Write the SAMI model card (``README.md``, :func:`sami.hub.render_model_card`) into ``output_dir``.

        As TRL's ``create_model_card``: the ``sami`` tag, the paper and its citation, the base model; and the
        principles (read from the training records' constitutions), merged or adapter, the training log, the
        settings that differ from the defaults and :attr:`command`. ``output_dir`` defaults to the folder
        ``save_model`` wrote last, else ``args.output_dir``.
        """
        if not self.is_world_process_zero():
            return
        folder = output_dir or self._saved_dir or self.args.output_dir
        records = getattr(self.train_dataset, "records", None) or []
        sizes = {len(r.get("constitutions") or []) for r in records}
        info = ModelCardInfo(
            model_name=model_name or (self.args.hub_model_id or "").split("/")[-1] or Path(folder).resolve().name,
            base_model=self.base_model,
            hub_model_id=self.hub_model_id or self.args.hub_model_id,
            weights=self._lora_weights(),
            principles=principles_of_records(records),
            num_constitutions=sizes.pop() if len(sizes) == 1 else None,
            training_log=list(self.state.log_history),
            settings=self._changed_settings(),
            command=self.command,
            datasets=[dataset_name] if dataset_name else [],
            tags=[tags] if isinstance(tags, str) else list(tags or []),
        )
        write_model_card(info, folder)

    def _changed_settings(self) -> dict:
        """The model and the arguments that differ from ``SAMIConfig``'s defaults (no output folder, no token)."""
        defaults = SAMIConfig(output_dir=self.args.output_dir).to_dict()
        changed = {
            k: v for k, v in self.args.to_dict().items()
            if defaults.get(k) != v and k != "output_dir" and not k.endswith("_token")
        }
        return {"model": self.base_model, **changed} if self.base_model else changed

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Create the model repo ``args.hub_model_id`` (default: the output folder's name) through :mod:`sami.hub`."""
        if not self.is_world_process_zero():
            return
        self.hub_model_id = create_repo(
            self.args.hub_model_id or Path(self.args.output_dir).absolute().name,
            token=token if token is not None else self.args.hub_token,
            private=private if private is not None else self.args.hub_private_repo,
        )
        self.push_in_progress = None

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Upload the model as ``save_model`` saved it (merged or adapter, by ``merge_lora_on_save``) with the SAMI
        model card, to ``args.hub_model_id``.

        Unlike ``Trainer.push_to_hub``, the folder uploaded is the one ``save_model`` wrote, which need not be
        ``args.output_dir`` (``sami run`` saves into ``iter_<t>/checkpoint``); without an earlier ``save_model``
        the model is saved to ``args.output_dir`` first. ``kwargs`` go to :meth:`create_model_card`.
        """
        if self._saved_dir is None:
            self._save_final(self.args.output_dir)
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(output_dir=self._saved_dir, **kwargs)
        self._finish_current_push()
        return upload_model(
            self._saved_dir,
            self.hub_model_id,
            token=token,
            revision=revision if revision is not None else self.args.hub_revision,
            commit_message=commit_message or "Upload SAMI model",
            blocking=blocking,
        )


def _name_or_path(model) -> str | None:
    """The folder or hub id a (possibly peft-wrapped) model was loaded from."""
    base = model.get_base_model() if is_peft_model(model) else model
    return getattr(getattr(base, "config", None), "_name_or_path", None) or None


def _preflight(dataset, batch_size: int, collator) -> None:
    """Fail before training, not at step N: mixed C in batched data, prompts over ``max_prompt_length``."""
    if not isinstance(dataset, SAMIDataset):
        return
    if len(dataset.num_constitutions) > 1 and batch_size > 1:
        raise ValueError(
            f"the records have different numbers of constitutions {dataset.num_constitutions}, but a micro-batch "
            "needs one C: train on records with a single C, or set the per-device batch size to 1"
        )
    if isinstance(collator, SAMICollator) and collator.max_prompt_length is not None:
        for record in dataset.records:
            collator.encode(record, epoch=0)  # raises PromptTooLong naming the query


def _warn_low_precision(model) -> None:
    trainable = [p for p in model.parameters() if p.requires_grad]
    low = [p for p in trainable if p.dtype in (torch.bfloat16, torch.float16)]
    if low:
        logger.warning(
            "sami: %d of %d trainable tensors are %s: an update at lr 5e-7 mostly rounds away in 16-bit weights (a "
            "pitfall of the paper's code). Load the model in float32 (load_model(spec, dtype='float32')) and let "
            "bf16=True autocast.",
            len(low),
            len(trainable),
            low[0].dtype,
        )


# ---------------------------------------------------------------------------------------------- helpers


def train_sami(
    model: PreTrainedModel | str,
    records,
    config: SAMIConfig,
    *,
    tokenizer=None,
    eval_records=None,
    output_dir: str | os.PathLike | None = None,
    resume: bool | str = False,
    command: str | None = None,
    base_model: str | None = None,
) -> Path:
    """Train with SAMI on generation records and save a plain Hugging Face checkpoint (pushed with
    ``config.push_to_hub``).

    Args:
        model: a model spec (loaded in float32) or a float32 model.
        records: the training records (list of dicts, a generations JSONL path, or a ``SAMIDataset``).
        config: the training configuration (``max_steps``, batch sizes, LoRA, ``push_to_hub``, ...).
        tokenizer: required when ``model`` is a model object.
        eval_records: optional held-out records; evaluated after training (metrics in the log history).
        output_dir: where the checkpoint goes; default ``config.output_dir``.
        resume: True: continue from the last ``checkpoint-N`` in ``config.output_dir`` if there is one
            (checkpoints are written with ``save_strategy="steps"``), else start from the beginning; a path:
            continue from that checkpoint.
        command: the command line shown on the model card (:func:`sami.hub.invocation`).
        base_model: how the model card names the base model (default: the spec given, else the folder or hub id
            the model was loaded from).

    Returns:
        Path: the checkpoint folder. Its ``trainer_state.json`` holds the log history (every logged metric), its
        ``README.md`` the model card.
    """
    trainer = SAMITrainer(model, config, train_dataset=records, eval_dataset=eval_records, processing_class=tokenizer)
    trainer.command = command
    trainer.base_model = base_model or trainer.base_model
    checkpoint = resume if isinstance(resume, str) else None
    if resume is True and Path(config.output_dir).is_dir():
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = get_last_checkpoint(config.output_dir)
    trainer.train(resume_from_checkpoint=checkpoint)
    if eval_records is not None:
        trainer.evaluate()
    output_dir = Path(output_dir if output_dir is not None else config.output_dir)
    if trainer.args.should_save:  # before save_model, so that a push uploads it too
        output_dir.mkdir(parents=True, exist_ok=True)
        trainer.state.save_to_json(str(output_dir / "trainer_state.json"))
    trainer.save_model(str(output_dir))
    return output_dir


def evaluate_sami(
    model: PreTrainedModel | str, records, config: SAMIConfig | None = None, *, tokenizer=None
) -> dict[str, float]:
    """The SAMI metrics of a model on records, without training: ``eval_mi/bound``, ``eval_loss``, ....

    Prompts are rendered as generated (no principle shuffle). ``config`` sets the objective (aggregation,
    weights, layout), ``per_device_eval_batch_size`` and precision; its LoRA, ``report_to`` and Hub settings are
    ignored (scoring opens no tracker run and pushes nothing); default: a ``SAMIConfig`` in a temporary folder.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        config = config if config is not None else SAMIConfig(
            output_dir=scratch, per_device_eval_batch_size=4, dataloader_pin_memory=torch.cuda.is_available()
        )
        if config.use_lora or config.report_to or config.push_to_hub:
            # no fresh (identity) adapter, no tracker run of its own, no Hub repo
            config = dataclasses.replace(config, use_lora=False, report_to="none", push_to_hub=False)
        trainer = SAMITrainer(model, config, eval_dataset=records, processing_class=tokenizer)
        metrics: dict[str, Any] = trainer.evaluate()
    return metrics
