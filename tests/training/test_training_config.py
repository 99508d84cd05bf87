"""SAMIConfig: the paper's defaults and errors that name the fix."""

from __future__ import annotations

import pytest

from sami.training import SAMIConfig


def test_defaults_are_the_papers(tmp_path):
    config = SAMIConfig(output_dir=str(tmp_path))
    assert config.learning_rate == 5e-7
    assert config.lr_scheduler_type == "constant" and config.warmup_steps == 0  # no first step at lr 0
    assert (config.aggregation, config.score_eos, config.row_weight, config.col_weight) == ("mean", False, 0.5, 0.5)
    assert config.loss_temperature == 1.0 and config.shuffle_principles
    assert config.remove_unused_columns is False and config.logging_steps == 1
    assert config.bf16 is False  # no bf16-capable GPU here: float32 on CPU
    assert config.target_modules == "all-linear"
    assert SAMIConfig(output_dir=str(tmp_path), lora_target_modules="q_proj, v_proj").target_modules == [
        "q_proj",
        "v_proj",
    ]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"aggregation": "max"}, "aggregation"),
        ({"layout": "packed"}, "layout"),
        ({"row_weight": -1.0}, "weights must be >= 0"),
        ({"row_weight": 0.0, "col_weight": 0.0}, "at least one > 0"),
        ({"loss_temperature": 0.0}, "loss_temperature must be > 0"),
        ({"max_prompt_length": 0}, "max_prompt_length"),
        ({"use_lora": True, "lora_r": 0}, "lora_r"),
        ({"use_lora": True, "lora_dropout": 1.0}, "lora_dropout"),
        ({"remove_unused_columns": True}, "remove_unused_columns=False"),
    ],
)
def test_errors_name_the_fix(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        SAMIConfig(output_dir=str(tmp_path), **overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"aggregation": "max"}, "aggregation must be 'mean' or 'sum'"),
        ({"layout": "packed"}, "layout must be 'auto', 'plain' or 'shared'"),
        ({"row_weight": -1.0}, "weights must be >= 0"),
    ],
)
def test_objective_settings_are_validated_by_the_objective(tmp_path, overrides, message):
    """One validation: the config raises the objective's own ConfigError."""
    from sami.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        SAMIConfig(output_dir=str(tmp_path), **overrides)


def test_score_eos_needs_an_eos_token(tokenizer):
    from sami.training import SAMICollator

    class NoEos:
        pad_token_id, eos_token_id = 0, None

    with pytest.raises(ValueError, match="score_eos=False"):
        SAMICollator(NoEos(), score_eos=True)
