"""Generate constitution-conditioned responses: one JSONL record per query, resumable.

    sami generate --principles hh --queries dialogue --output runs/gen.jsonl
    sami generate --principles tldr --queries summarisation --task summarisation --scheme negations \\
        --model gemma3-270m --max_new_tokens 128 --output runs/tldr.jsonl
    sami generate --principles hh --generation_backend vllm --output runs/gen.jsonl   # a vLLM engine
    accelerate launch -m sami.cli generate --principles hh --output runs/gen.jsonl   # one shard per process
    sami generate --principles hh --model Qwen/Qwen3-0.6B --model_revision main --dtype float32 \\
        --generation_backend hf --attn_implementation eager --output runs/qwen.jsonl
    sami generate --principles hh --output runs/gen.jsonl --push_generations_to_hub me/sami-gens   # docs/hub.md

The model is loaded in --generation_dtype, else --dtype, else bfloat16; --model_revision,
--trust_remote_code, --attn_implementation (hf backend), --device_map and --load_in_4bit/--load_in_8bit
(hf backend) say how. Rerunning the same command resumes: queries already in the output are skipped,
and an output that other settings (model, its loading options, dtype, sampling ...) started is
refused (docs/generation.md). --push_generations_to_hub pushes the finished file as a Hub dataset
(config `default`, split --split; `hf auth login` first), which `sami train --generations` reads back.
"""

from __future__ import annotations

from accelerate import PartialState

from sami.config.args import ConstitutionArgs, GenerationArgs, HubPushArgs, ModelArgs, PrincipleArgs, QueryArgs
from sami.config.commands import GenerateOutputArgs
from sami.config.parser import SamiParser
from sami.constitutions import build_sampler
from sami.data import load_queries
from sami.generation import generate_dataset, resolve_template
from sami.principles import obtain_principles


def make_parser() -> SamiParser:
    return SamiParser(
        [ModelArgs, PrincipleArgs, QueryArgs, ConstitutionArgs, GenerationArgs, GenerateOutputArgs, HubPushArgs],
        prog="sami generate",
        description=__doc__,
    )


def main(argv: list[str] | None = None) -> int:
    model_args, principle_args, query_args, constitution_args, generation_args, output_args, hub_args = (
        make_parser().parse_args_and_config(argv)
    )
    principle_set = obtain_principles(principle_args, output_args.seed)
    sampler = build_sampler(
        constitution_args.scheme,
        principle_set,
        constitution_args.num_constitutions,
        output_args.principle_split,
        constitution_args.principles_per_constitution,
    )
    limit = query_args.max_train_queries if output_args.split == "train" else query_args.max_eval_queries
    queries = load_queries(
        query_args.queries,
        output_args.split,
        column=query_args.query_column,
        limit=limit,
        seed=output_args.seed,
        data_path=query_args.query_data_path,
    )
    generator = generation_args.generator(model_args.model, output_args.seed, model_args)
    template = resolve_template(
        generator.tokenizer, query_args.task, generation_args.prompt_kind, generation_args.chain_of_thought
    )
    report = generate_dataset(
        generator,
        queries,
        sampler,
        template,
        output_args.output,
        sampling=generation_args.sampling(output_args.seed),
        filters=generation_args.filters(),
        seed=output_args.seed,
    )
    print(f"{output_args.output}: {report.summary()}")
    if hub_args.push_generations_to_hub and PartialState().is_main_process:  # the shards are merged by now
        from sami.hub import push_generations

        print(push_generations(output_args.output, hub_args.push_generations_to_hub, split=output_args.split,
                               private=hub_args.private_dataset or None))
    return 0
