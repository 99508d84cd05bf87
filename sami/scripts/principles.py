"""Write principles with a language model, or check a hand-written principle file.

    sami principles --task_description "summarise Reddit posts" --num_principles 4 --writer smollm2-135m \\
        --output principles.yaml
    sami principles --task_description "summarise Reddit posts" --num_principles 4 --writer api \\
        --writer_model gpt-4o --output principles.yaml            # key in $OPENAI_API_KEY
    sami principles --task_description "summarise Reddit posts" --writer api --writer_model claude-opus-4-1 \\
        --writer_base_url https://api.anthropic.com/v1 --writer_api_key_env ANTHROPIC_API_KEY
    sami principles --principles my_principles.yaml --output checked.yaml   # validate a hand-written file
    sami principles --task_description "summarise Reddit posts" --writer Qwen/Qwen3-8B \\
        --writer_model_kwargs '{"revision": "main", "dtype": "bfloat16", "load_in_4bit": true}'

--writer is a local model spec, or api: --writer_model on any OpenAI-compatible endpoint
(--writer_base_url, e.g. a local vLLM server with --writer_api_key_env ''). A local writer loads in
bfloat16; --writer_model_kwargs (JSON, or a mapping in --config YAML) sets its dtype and loading options
(revision, trust_remote_code, attn_implementation, device_map, load_in_4bit, ...). The file format and
the writer are described in docs/principles.md.
"""

from __future__ import annotations

from sami.config.args import PrincipleArgs
from sami.config.commands import PrinciplesOutputArgs
from sami.config.parser import SamiParser
from sami.principles import obtain_principles, save_principles


def make_parser() -> SamiParser:
    return SamiParser([PrincipleArgs, PrinciplesOutputArgs], prog="sami principles", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    principle_args, output_args = make_parser().parse_args_and_config(argv)
    principle_set = obtain_principles(principle_args, output_args.seed)
    path = save_principles(principle_set, output_args.output)
    for principle in principle_set:
        print(f"- {principle.name} [{principle.split}]\n    + {principle.definition}\n    - {principle.antithesis}")
    print(f"wrote {len(principle_set)} principles to {path}")
    return 0
