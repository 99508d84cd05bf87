"""Model options (revision, trust_remote_code, attn_implementation, dtype, device_map, 4/8-bit) reach
``from_pretrained``, fail early with the fix where they cannot work, and are parsed from the flags."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from sami.config.args import GenerationArgs, ModelArgs, PrincipleArgs
from sami.errors import ConfigError
from sami.models import ModelOptions, QuantizationUnavailable, load_for_training, load_model
from sami.models.loading import pretrained_kwargs, quantization_config
from sami.models.options import is_hub_id


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_attn_implementation_and_dtype_reach_from_pretrained(tiny_model_dir, attn):
    model, tokenizer = load_model(
        str(tiny_model_dir), dtype="bfloat16", device="cpu", options=ModelOptions(attn_implementation=attn)
    )
    assert model.config._attn_implementation == attn
    assert model.dtype == torch.bfloat16 and tokenizer.pad_token_id is not None


def test_device_map_lets_from_pretrained_place_the_weights(tiny_model_dir):
    """With device_map, from_pretrained places the weights (here on the meta device) and nothing moves them after."""
    placed, _ = load_model(str(tiny_model_dir), dtype="float32", device="cpu", options=ModelOptions(device_map="meta"))
    moved, _ = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    assert placed.device.type == "meta" and moved.device.type == "cpu"


def test_revision_of_a_local_model_is_refused_on_the_command_line_and_ignored_when_loading(tiny_model_dir, caplog):
    with pytest.raises(ConfigError, match="drop --model_revision"):
        ModelArgs(model=str(tiny_model_dir), model_revision="v2")
    with pytest.raises(ConfigError, match="drop --model_revision"):
        ModelArgs(model="smollm2-135m", model_revision="v2")
    assert ModelArgs(model="org/model", model_revision="v2").options().revision == "v2"

    # sami's own checkpoints (a run's iter_<t>/checkpoint) are local: loaded as they are, with a note
    with caplog.at_level(logging.INFO, logger="sami.models.loading"):
        model, _ = load_model(str(tiny_model_dir), device="cpu", options=ModelOptions(revision="v2"))
    assert "applies to hub ids only" in caplog.text
    assert model.config.model_type == "llama"
    assert ModelOptions(revision="v2").identity(str(tiny_model_dir)) == {}  # not in a local model's resume key
    assert ModelOptions(revision="v2").identity("org/model") == {"revision": "v2"}


def test_hub_ids_get_revision_and_remote_code():
    options = ModelOptions(revision="a1b2c3", trust_remote_code=True, attn_implementation="eager")
    kwargs = pretrained_kwargs("org/model", options, torch.float32, torch.device("cpu"))
    assert kwargs == {"dtype": torch.float32, "revision": "a1b2c3", "trust_remote_code": True,
                      "attn_implementation": "eager"}
    plain = pretrained_kwargs("org/model", ModelOptions(), torch.float32, torch.device("cpu"))
    assert plain == {"dtype": torch.float32}
    assert is_hub_id("org/model") and not is_hub_id("smollm2-135m") and not is_hub_id("runs/gen.jsonl")


def test_trust_remote_code_reaches_from_pretrained(tiny_model_dir, tmp_path, monkeypatch):
    """A folder whose config names its own modelling code loads only with trust_remote_code."""
    import sys

    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # transformers copies the code there
    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = tmp_path / "remote_tiny"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "configuration_remote_tiny.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass RemoteTinyConfig(LlamaConfig):\n"
        "    model_type = 'remote_tiny'\n"
    )
    (folder / "modeling_remote_tiny.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_remote_tiny import RemoteTinyConfig\n\n\n"
        "class RemoteTinyForCausalLM(LlamaForCausalLM):\n    config_class = RemoteTinyConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="remote_tiny", architectures=["RemoteTinyForCausalLM"], auto_map={
        "AutoConfig": "configuration_remote_tiny.RemoteTinyConfig",
        "AutoModelForCausalLM": "modeling_remote_tiny.RemoteTinyForCausalLM",
    })
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(ValueError, match="trust_remote_code"):
        load_model(str(folder), device="cpu")
    model, _ = load_model(str(folder), device="cpu", options=ModelOptions(trust_remote_code=True))
    assert type(model).__name__ == "RemoteTinyForCausalLM"


def _bitsandbytes_stand_in(tmp_path, monkeypatch) -> None:
    """An empty ``bitsandbytes`` package where the real one is missing, so that the checks after it are reached."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        (tmp_path / "bitsandbytes").mkdir()
        (tmp_path / "bitsandbytes" / "__init__.py").write_text("")
        monkeypatch.syspath_prepend(str(tmp_path))


def test_quantisation_without_bitsandbytes_or_gpu_names_the_fix(tmp_path, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(QuantizationUnavailable, match="pip install bitsandbytes"):
            ModelArgs(load_in_4bit=True)
    _bitsandbytes_stand_in(tmp_path, monkeypatch)
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(QuantizationUnavailable, match="needs a CUDA GPU"):
        ModelArgs(load_in_8bit=True)
    with pytest.raises(QuantizationUnavailable, match="needs a CUDA GPU"):
        PrincipleArgs(task_description="t", writer_model_kwargs={"load_in_4bit": True})


def test_quantisation_settings_are_checked_before_loading(tiny_model_dir, tmp_path, monkeypatch):
    from sami.training import SAMIConfig

    _bitsandbytes_stand_in(tmp_path, monkeypatch)

    with pytest.raises(ConfigError, match="exclude each other"):
        ModelOptions(load_in_4bit=True, load_in_8bit=True)
    with pytest.raises(ConfigError, match="nf4, fp4"):
        ModelOptions(load_in_4bit=True, bnb_4bit_quant_type="int4")
    with pytest.raises(ConfigError, match="add --use_lora true"):
        ModelOptions(load_in_4bit=True).check_training(use_lora=False)
    ModelOptions(load_in_4bit=True).check_training(use_lora=True)
    ModelOptions().check_training(use_lora=False)
    # 4/8-bit weights live on a CUDA GPU: a CPU training process is refused before reading anything
    args = SAMIConfig(output_dir="unused", use_cpu=True, use_lora=True)
    with pytest.raises((ConfigError, QuantizationUnavailable), match="CUDA GPU"):
        load_for_training(str(tiny_model_dir), args, options=ModelOptions(load_in_4bit=True))
    # TRL's BitsAndBytesConfig: 4-bit computes in the loading dtype
    config = quantization_config(ModelOptions(load_in_4bit=True, use_bnb_nested_quant=True), torch.bfloat16)
    assert (config.load_in_4bit, config.bnb_4bit_compute_dtype, config.bnb_4bit_quant_type,
            config.bnb_4bit_use_double_quant) == (True, torch.bfloat16, "nf4", True)
    assert quantization_config(ModelOptions(load_in_8bit=True), torch.float32).load_in_8bit
    with pytest.raises(ConfigError, match="CUDA GPU"):
        pretrained_kwargs("org/model", ModelOptions(load_in_4bit=True), torch.float32, torch.device("cpu"))


def test_sami_train_refuses_quantisation_before_any_work(tmp_path, capsys):
    from sami.cli import main as sami

    out = tmp_path / "out"
    code = sami(["train", "--generations", str(tmp_path / "missing.jsonl"), "--output_dir", str(out),
                 "--use_lora", "true", "--load_in_4bit", "true"])
    assert code == 2
    assert "--load_in_4bit" in capsys.readouterr().err and not out.exists()


def test_one_dtype_story():
    """--dtype is the model's weights dtype; unset, training loads float32 and generation --generation_dtype."""
    assert ModelArgs().training_dtype == "float32"
    assert ModelArgs(dtype="bfloat16").training_dtype == "bfloat16"
    assert GenerationArgs().dtype() == GenerationArgs().dtype(ModelArgs()) == "bfloat16"
    assert GenerationArgs().dtype(ModelArgs(dtype="float32")) == "float32"
    assert GenerationArgs(generation_dtype="float16").dtype(ModelArgs(dtype="float32")) == "float16"
    with pytest.raises(ConfigError, match="--dtype 'fp32' is not a dtype"):
        ModelArgs(dtype="fp32")
    with pytest.raises(ConfigError, match="--generation_dtype"):
        GenerationArgs(generation_dtype="half")


def test_writer_model_kwargs():
    args = PrincipleArgs(task_description="t", writer="org/writer",
                         writer_model_kwargs='{"revision": "v1", "dtype": "float32", "attn_implementation": "eager"}')
    assert args.writer_loading() == (ModelOptions(revision="v1", attn_implementation="eager"), "float32")
    assert PrincipleArgs(task_description="t").writer_loading() == (ModelOptions(), None)
    with pytest.raises(ConfigError, match="unknown key"):
        PrincipleArgs(task_description="t", writer_model_kwargs={"model_revision": "v1"})
    with pytest.raises(ConfigError, match="not a JSON object"):
        PrincipleArgs(task_description="t", writer_model_kwargs="{revision: v1}")
    with pytest.raises(ConfigError, match="drop --writer_model_kwargs"):
        PrincipleArgs(task_description="t", writer="api", writer_model="gpt-4o",
                      writer_model_kwargs={"dtype": "float32"})


def test_the_flags_parse_into_model_args(tmp_path):
    from sami.scripts import generate

    groups = generate.make_parser().parse_args_and_config([
        "--model", "org/model", "--model_revision", "v3", "--trust_remote_code", "true",
        "--attn_implementation", "eager", "--dtype", "float32", "--device_map", "auto",
    ])
    model_args = next(g for g in groups if isinstance(g, ModelArgs))
    assert model_args.options() == ModelOptions(revision="v3", trust_remote_code=True, attn_implementation="eager",
                                                device_map="auto")
    assert model_args.dtype == "float32"


def test_the_local_judge_and_the_local_writer_load_with_their_options(tiny_model_dir, monkeypatch):
    from sami.evaluation.local_judge import LocalJudge
    from sami.principles import obtain_principles, writer

    judge = LocalJudge.from_spec(str(tiny_model_dir), dtype="float32", device="cpu",
                                 options=ModelOptions(attn_implementation="eager"))
    assert judge.model.config._attn_implementation == "eager"

    loaded = []

    def scripted_completer(model, tokenizer, temperature, seed):  # the writer's model, then scripted answers
        loaded.append(model)
        answers = iter([" is short."] * 8 + [" is long."] * 8)
        return lambda prompts, prefills: [next(answers) for _ in prompts]

    monkeypatch.setattr(writer, "model_completer", scripted_completer)
    args = PrincipleArgs(task_description="chat", num_principles=1, writer=str(tiny_model_dir),
                         writer_aspects=["length"],
                         writer_model_kwargs={"attn_implementation": "eager", "dtype": "float32"})
    principle_set = obtain_principles(args)
    assert loaded[0].config._attn_implementation == "eager" and loaded[0].dtype == torch.float32
    assert principle_set.metadata["writer"] == {"backend": "local", "model": str(tiny_model_dir),
                                                "attn_implementation": "eager"}
