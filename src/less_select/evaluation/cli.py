"""``less-select eval``: a thin command-line layer over :func:`run_eval`."""

from __future__ import annotations

import argparse

from ..configs import add_arguments, from_namespace
from .run import EvalConfig, run_eval

DESCRIPTION = """Evaluate a model (optionally with a PEFT adapter) on a LESS benchmark or a target set.

  bbh      3-shot chain-of-thought exact match (40 examples per task by default)
  mmlu     5-shot accuracy from the answer-letter probabilities
  tydiqa   1-shot F1 / exact match (SQuAD normalisation)
  loss:X   mean completion loss on a target set: X = bbh | mmlu | tydiqa (the LESS target sets)
           or a data file (any supported format, optional "subtask" field)
  exact_match:FILE   greedy answers on a data file whose records carry a gold "answer"
           (answer after "So the answer is", else the first line; case/punctuation-insensitive)

Writes <output-dir>/<task>.json and <task>_predictions.jsonl and prints a per-subtask table.
See docs/evaluation.md for the protocol and its differences from open-instruct."""


def handle(args: argparse.Namespace) -> int:
    config = from_namespace(EvalConfig, args)
    run_eval(config)
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``eval`` on an ``add_subparsers()`` object; the handler is ``args.func(args)``."""
    parser = subparsers.add_parser("eval", help="evaluate a model on BBH / MMLU / TydiQA or a "
                                                "target-set loss", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, EvalConfig)
    parser.set_defaults(func=handle, config_class=EvalConfig)
    return parser
