"""`sami run` checks every setting it can before it writes anything: a refused command leaves no run folder behind."""

import pytest

from sami.errors import ConfigError
from sami.scripts import run


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learning_rate", "-1e-3"], "--learning_rate -0.001"),  # sami.config.checks, at parsing
        (["--adam_beta2", "1.0"], "--adam_beta2 1.0"),
        (["--learning_rate", "nan"], "--learning_rate nan"),
        (["--scheme", "diverse", "--principles_per_constitution", "5"], "principles_per_constitution=5"),  # Pipeline
        (["--scheme", "nope"], "unknown constitution scheme 'nope'"),
    ],
)
def test_a_refused_setting_writes_nothing(tiny_model_dir, tmp_path, flags, message):
    """Refused before iteration 0, so the corrected command starts the run instead of finding a config.yaml."""
    run_dir = tmp_path / "run"
    argv = ["--model", str(tiny_model_dir), "--principles", "hh", "--use_cpu", "true", "--output_dir", str(run_dir)]
    with pytest.raises(ConfigError, match=message):
        run.main([*argv, *flags])
    assert not run_dir.exists()
