"""SAMITrainer on tiny random-weight Llamas: parameters move, metrics, exact GA, LoRA merge, resume."""

from __future__ import annotations

import pytest
import torch
from helpers import make_records

from sami.training import SAMIConfig, SAMITrainer, evaluate_sami, merge_lora_checkpoint
from sami.training.trainer import METRICS

THREE = ["concise", "comprehensive", "polite"]  # 6 principle orders: the shuffle really changes prompts


def _config(tmp_path, **overrides) -> SAMIConfig:
    settings = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "max_steps": 2,
        "learning_rate": 1e-2,  # gradients of a random tiny model are small
        "disable_tqdm": True,
        "dataloader_pin_memory": False,
        "seed": 0,
    }
    settings.update(overrides)
    return SAMIConfig(**settings)


def _losses(trainer) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}


def test_train_moves_every_parameter_and_logs_metrics(tmp_path, tokenizer, model_factory):
    model = model_factory()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = SAMITrainer(
        model,
        _config(tmp_path, max_steps=3),
        train_dataset=make_records(6, principles=THREE),
        eval_dataset=make_records(4, principles=THREE),
        processing_class=tokenizer,
    )
    assert trainer.layout == "shared"
    trainer.train()
    for name, param in trainer.model.named_parameters():
        assert not torch.equal(param.detach(), before[name]), f"{name} did not change"

    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 3  # logging_steps=1
    for key in [*METRICS, "tokens_per_second", "grad_norm"]:
        assert key in logged[0], key
    assert logged[0]["length/response"] > 0 and logged[0]["tokens_per_second"] > 0
    assert 0 <= logged[0]["accuracy/rows"] <= 1

    metrics = trainer.evaluate()
    for key in ["eval_loss", *(f"eval_{k}" for k in METRICS)]:
        assert key in metrics, key
    bound = metrics["eval_mi/bound"]
    assert bound == pytest.approx((metrics["eval_mi/bound_rows"] + metrics["eval_mi/bound_cols"]) / 2, abs=1e-6)
    assert bound == pytest.approx(torch.log(torch.tensor(2.0)).item() - metrics["eval_loss"], abs=1e-5)


def _one_sgd_step(tmp_path, tokenizer, model_factory, records, batch, accumulation, layout="auto"):
    trainer = SAMITrainer(
        model_factory(),
        _config(
            tmp_path,
            optim="sgd",
            learning_rate=1.0,
            max_grad_norm=0.0,
            max_steps=1,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            layout=layout,
        ),
        train_dataset=records,
        processing_class=tokenizer,
    )
    trainer.train()
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}, _losses(trainer)[1]


@pytest.mark.parametrize(
    "n, small, large",
    [(4, (1, 4), (4, 1)), (3, (2, 2), (3, 1))],  # equal micro-batches; unequal (2 + 1 queries)
    ids=["1x4-vs-4x1", "2+1-vs-3x1"],
)
def test_gradient_accumulation_equals_one_large_batch(tmp_path, tokenizer, model_factory, n, small, large):
    """One SGD step at lr 1: the update is the gradient, so equal weights mean equal gradients.

    The paper's code zeroed the gradients every micro-step (a pitfall of the authors' released code); here the
    accumulated update must equal the large-batch one, also when the last micro-batch is smaller.
    """
    records = make_records(n, principles=THREE)
    initial = dict(model_factory().named_parameters())
    accumulated, loss_a = _one_sgd_step(tmp_path / "a", tokenizer, model_factory, records, *small)
    large_batch, loss_b = _one_sgd_step(tmp_path / "b", tokenizer, model_factory, records, *large)
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    moved = max((large_batch[k] - initial[k].detach()).abs().max().item() for k in large_batch)
    assert moved > 1e-4  # the step is large enough for a mis-scaled accumulation to show
    for name in large_batch:
        torch.testing.assert_close(accumulated[name], large_batch[name], atol=1e-6, rtol=0, msg=name)


def test_lora_merged_checkpoint_reloads_without_peft(tmp_path, tokenizer, model_factory):
    from transformers import AutoModelForCausalLM

    base_dir = tmp_path / "base"
    model_factory(seed=1).save_pretrained(base_dir)  # the base weights on disk, as a real run loads them
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    trainer = SAMITrainer(
        model,
        _config(tmp_path, use_lora=True, lora_r=4, lora_alpha=8, learning_rate=5e-2),
        train_dataset=make_records(4),
        processing_class=tokenizer,
    )
    assert sum(p.numel() for p in trainer.model.parameters() if p.requires_grad) < 0.1 * sum(
        p.numel() for p in trainer.model.parameters()
    )
    trainer.train()
    out = tmp_path / "merged"
    trainer.save_model(str(out))
    assert (out / "config.json").exists() and (out / "tokenizer_config.json").exists()
    assert (out / "adapter" / "adapter_config.json").exists()
    assert not (out / "adapter_config.json").exists()  # the root is a plain checkpoint

    ids = torch.tensor([tokenizer("Summarise the post below. POST: my cat hides. Summary:")["input_ids"]])
    trained = trainer.model.eval()
    with torch.no_grad():
        expected = trained(input_ids=ids).logits
        base_logits = AutoModelForCausalLM.from_pretrained(base_dir)(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out)  # no peft involved
        assert not any("lora" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
        assert (expected - base_logits).abs().max() > 1e-3  # the adapter did change the model

        # the path used after FSDP/DeepSpeed training: merge the saved adapter into the base from disk
        merge_lora_checkpoint(out / "adapter", tmp_path / "merged2", base_model=str(base_dir))
        again = AutoModelForCausalLM.from_pretrained(tmp_path / "merged2")
        torch.testing.assert_close(again(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)


def test_resume_reproduces_the_uninterrupted_losses(tmp_path, tokenizer, model_factory):
    """4 steps over 2 epochs (4 records, batch 2), a checkpoint after step 3 (mid-epoch 1): resuming there
    must replay step 4 exactly, with epoch 1's principle order, the data order and AdamW's state."""
    records = make_records(4, principles=THREE)
    settings = {"max_steps": 4, "learning_rate": 1e-3, "save_strategy": "steps", "save_steps": 3}
    full = SAMITrainer(
        model_factory(), _config(tmp_path / "full", **settings), train_dataset=records, processing_class=tokenizer
    )
    full.train()
    expected = _losses(full)
    assert sorted(expected) == [1, 2, 3, 4]

    resumed = SAMITrainer(
        model_factory(), _config(tmp_path / "resumed", **settings), train_dataset=records, processing_class=tokenizer
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "out" / "checkpoint-3"))
    assert resumed.data_collator.epoch == 1
    got = _losses(resumed)  # steps 1-3 come from the checkpoint's state, step 4 was trained again
    assert sorted(got) == [1, 2, 3, 4]
    assert got[4] == pytest.approx(expected[4], rel=1e-6, abs=1e-7)
    assert got[4] != pytest.approx(expected[3], rel=1e-4)  # a different batch from step 3's
    for (name, a), b in zip(full.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6, msg=name)


def test_evaluate_sami_without_training(tokenizer, model_factory):
    metrics = evaluate_sami(model_factory(), make_records(3), tokenizer=tokenizer)
    assert metrics["eval_length/response"] > 0
    assert -1.0 < metrics["eval_mi/bound"] < torch.log(torch.tensor(2.0)).item()


def test_bad_data_fails_before_training(tmp_path, tokenizer, model_factory):
    from sami.training import PromptTooLong

    mixed = make_records(2, C=2) + make_records(2, C=3, principles=THREE)
    with pytest.raises(ValueError, match="one C"):
        SAMITrainer(model_factory(), _config(tmp_path), train_dataset=mixed, processing_class=tokenizer)
    with pytest.raises(PromptTooLong, match="max_prompt_length=16"):
        SAMITrainer(
            model_factory(),
            _config(tmp_path, max_prompt_length=16),
            train_dataset=make_records(2),
            processing_class=tokenizer,
        )


def _distance(model, start: dict[str, torch.Tensor]) -> float:
    """L2 distance of the trainable weights from ``start``."""
    return sum(((p.detach() - start[n]) ** 2).sum().item() for n, p in model.named_parameters() if n in start) ** 0.5


def test_kl_penalty_holds_full_fine_tuning_near_the_starting_weights(tmp_path, tokenizer, model_factory):
    """AdamW, 6 steps: with kl_coef the weights end nearer the start; the first step is the same (KL 0, no gradient)."""
    records = make_records(4, principles=THREE)
    start = {n: p.detach().clone() for n, p in model_factory().named_parameters()}
    runs = {}
    for kl_coef in (0.0, 1.0):
        config = _config(tmp_path / str(kl_coef), max_steps=6, kl_coef=kl_coef)
        trainer = SAMITrainer(model_factory(), config, train_dataset=records, processing_class=tokenizer)
        trainer.train()
        runs[kl_coef] = trainer
    free, held = runs[0.0], runs[1.0]
    assert free.ref_model is None and "kl" not in free.state.log_history[0]
    logged = [h for h in held.state.log_history if "loss" in h]
    assert logged[0]["kl"] == pytest.approx(0.0, abs=1e-6) and logged[1]["kl"] > 1e-3
    assert logged[-1]["kl"] < max(h["kl"] for h in logged) / 2  # the penalty pulls the model back
    assert logged[0]["loss"] == pytest.approx(_losses(free)[1], abs=1e-6)  # step 1 is untouched
    assert _distance(held.model, start) < 0.8 * _distance(free.model, start)
    for name, param in held.ref_model.named_parameters():  # the reference is a frozen copy of the start
        torch.testing.assert_close(param, start[name], atol=0, rtol=0, msg=name)
        assert not param.requires_grad


def test_lora_initialisation_follows_the_seed(tmp_path, tokenizer, model_factory):
    def adapter(seed: int) -> torch.Tensor:
        torch.manual_seed(seed + 100)  # whatever state the process is in, the seed decides
        config = _config(tmp_path, use_lora=True, lora_r=4, lora_alpha=8, seed=seed)
        trainer = SAMITrainer(model_factory(), config, train_dataset=make_records(2), processing_class=tokenizer)
        return torch.cat([p.detach().flatten() for n, p in trainer.model.named_parameters() if "lora_A" in n])

    torch.testing.assert_close(adapter(0), adapter(0), atol=0, rtol=0)
    assert not torch.equal(adapter(0), adapter(1))


def test_kl_penalty_under_lora_uses_the_model_without_its_adapter(tmp_path, tokenizer, model_factory):
    from sami.objective import response_token_logprobs

    config = _config(tmp_path, use_lora=True, lora_r=4, lora_alpha=8, learning_rate=5e-2, kl_coef=1.0)
    trainer = SAMITrainer(model_factory(), config, train_dataset=make_records(4), processing_class=tokenizer)
    assert trainer.ref_model is None  # no copy: the adapter is switched off
    trainer.train()
    assert [h["kl"] for h in trainer.state.log_history if "loss" in h][1] > 0
    batch = trainer.data_collator(make_records(2))
    with torch.no_grad():
        reference = trainer._reference_logprobs(trainer.model, batch)
        torch.testing.assert_close(reference, response_token_logprobs(model_factory(), batch), atol=1e-5, rtol=1e-5)
        assert (response_token_logprobs(trainer.model, batch) - reference).abs().max() > 1e-3  # trained != reference


def test_kl_settings_are_checked(tmp_path, tokenizer, model_factory):
    from sami.errors import ConfigError

    with pytest.raises(ConfigError, match="kl_coef=-1"):
        _config(tmp_path, kl_coef=-1.0)
    with pytest.raises(ConfigError, match="set kl_coef > 0"):
        SAMITrainer(
            model_factory(), _config(tmp_path), train_dataset=make_records(2), processing_class=tokenizer,
            ref_model=model_factory(),
        )
