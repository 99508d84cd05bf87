"""Loading options reach the generators and their resume key: a generations file that other options started
(revision, dtype, trust_remote_code, attn_implementation, quantisation) is refused, never mixed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sami.config.args import GenerationArgs, ModelArgs
from sami.constitutions import build_sampler
from sami.errors import ConfigError
from sami.generation import HFGenerator, OtherSettingsError, SamplingConfig, generate_dataset, resolve_template
from sami.generation.vllm_backend import VLLMGenerator
from sami.jsonl import read_jsonl
from sami.models import ModelOptions
from sami.principles import load_principles


@dataclass(frozen=True)
class Q:
    id: str
    text: str


QUERIES = [Q("q0", "Why is the sky blue?"), Q("q1", "What should I cook tonight?")]


def _generate(generator, path):
    sampler = build_sampler("fixed_pair", load_principles("hh"), 2)
    template = resolve_template(generator.tokenizer, "dialogue")
    return generate_dataset(generator, QUERIES, sampler, template, path,
                            sampling=SamplingConfig(max_new_tokens=2, batch_size=4), show_progress=False)


def test_default_options_keep_the_resume_key_of_older_files(tiny_model_dir):
    """Nothing is added to the identity unless an option differs from its default (older files still resume)."""
    generator = HFGenerator(str(tiny_model_dir), dtype="float32", device="cpu")
    assert generator.identity() == {"backend": "hf", "dtype": "float32"}
    eager = HFGenerator(str(tiny_model_dir), dtype="float32", device="cpu",
                        options=ModelOptions(attn_implementation="eager", trust_remote_code=True))
    assert eager.model.config._attn_implementation == "eager"  # the options reached the loaded model
    assert eager.identity() == {"backend": "hf", "dtype": "float32", "attn_implementation": "eager",
                                "trust_remote_code": True}
    assert ModelOptions(load_in_4bit=True, use_bnb_nested_quant=True).identity() == {"quantization": "4bit-nf4-nested"}
    assert ModelOptions(load_in_8bit=True, revision="v1").identity("org/m") == {"revision": "v1",
                                                                                "quantization": "8bit"}


def test_other_loading_options_are_refused_on_resume(tiny_model_dir, tmp_path):
    path = tmp_path / "gen.jsonl"
    _generate(HFGenerator(str(tiny_model_dir), dtype="float32", device="cpu"), path)
    first = read_jsonl(path)
    assert len(first) == 2 and "attn_implementation" not in first[0]["provenance"]

    eager = HFGenerator(str(tiny_model_dir), dtype="float32", device="cpu",
                        options=ModelOptions(attn_implementation="eager"))
    with pytest.raises(OtherSettingsError, match="other settings.*attn_implementation"):
        _generate(eager, path)
    with pytest.raises(OtherSettingsError, match="other settings"):
        _generate(HFGenerator(str(tiny_model_dir), dtype="bfloat16", device="cpu"), path)
    assert read_jsonl(path) == first  # nothing was appended

    _generate(eager, tmp_path / "eager.jsonl")
    assert read_jsonl(tmp_path / "eager.jsonl")[0]["provenance"]["attn_implementation"] == "eager"


def test_generation_args_pass_the_model_options_and_dtype(tiny_model_dir):
    model_args = ModelArgs(model=str(tiny_model_dir), dtype="float32", attn_implementation="eager")
    generator = GenerationArgs(generation_backend="hf", device="cpu").generator(model_args.model, 0, model_args)
    assert generator.identity() == {"backend": "hf", "dtype": "float32", "attn_implementation": "eager"}
    assert str(generator.model.dtype) == "torch.float32"


def test_vllm_refuses_bitsandbytes_weights_before_starting():
    with pytest.raises(ConfigError, match="--generation_backend hf"):
        VLLMGenerator("org/model", options=ModelOptions(load_in_4bit=True))
