"""The ``less-select`` command: one thin subcommand per stage over its config dataclass.

User mistakes (``UserError``, and bad flags) print one line and exit with status 2; a refusal of
the file system (``OSError``: permissions, disk full) prints one line and exits with 1 (``-v`` shows
its traceback); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable

from . import __version__
from .configs import add_arguments, from_namespace
from .errors import UserError


def _stage(sub, name: str, help: str, cls_path: str, run_path: str, *, active: str | None) -> None:
    """Register a subcommand whose flags are the fields of a config dataclass (imported only for the
    command being run, so ``--help`` and unrelated commands stay fast)."""
    if name != active:
        sub.add_parser(name, help=help)
        return
    cls = _load(cls_path)
    p = sub.add_parser(name, help=help, description=help + "\n\n" + (cls.__doc__ or ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, cls)

    def handler(ns):
        config = from_namespace(cls, ns)
        if getattr(config, "threads", 0):  # a command's own thread count (demo) wins over --threads
            import torch
            torch.set_num_threads(config.threads)
        result = _load(run_path)(config)
        if name in PRINTERS:
            print(_load(PRINTERS[name])(config, result))
        elif isinstance(result, dict):
            print(json.dumps(result, indent=2, default=str))
        elif result is not None:
            print(result)
    p.set_defaults(handler=handler)


def _load(path: str):
    """``module:name`` -> the object (modules are imported only for the command being run)."""
    import importlib
    mod_name, attr = path.rsplit(":", 1)
    return getattr(importlib.import_module(mod_name), attr)


# command -> (help, config dataclass, run function): the single table the parser, docs and tests use
STAGES: dict[str, tuple[str, str, str]] = {
    "tiny-model": ("Build a tiny Llama + tokenizer offline from your data (CPU trials).",
                   "less_select.demo.tiny_model:TinyModelConfig", "less_select.demo.tiny_model:run_tiny_model"),
    "warmup": ("LoRA warmup training on a random fraction of the pool.",
               "less_select.training.warmup:WarmupConfig", "less_select.training.warmup:run_warmup"),
    "datastore": ("Adam-preconditioned, projected per-example gradients of the pool.",
                  "less_select.datastore.build:DatastoreConfig", "less_select.datastore.build:run_datastore"),
    "targets": ("Gradient features of the target examples (BBH/MMLU/TydiQA or a file).",
                "less_select.datastore.build:TargetsConfig", "less_select.datastore.build:run_targets"),
    "select": ("Influence scores and top-k selection.",
               "less_select.select_stage:SelectConfig", "less_select.select_stage:run_select"),
    "fuse": ("Hybrid selection: rank fusion of several selection folders (e.g. LESS + RDS+).",
             "less_select.fusion:FuseConfig", "less_select.fusion:run_fuse"),
    "baseline": ("Select with a baseline method (random, bm25, dsir, rds, rds_plus).",
                 "less_select.baselines.stage:BaselineConfig", "less_select.baselines.stage:run_baseline"),
    "train": ("Train a model (LoRA or full) on a selection.",
              "less_select.training.finetune:FinetuneConfig", "less_select.training.finetune:run_finetune"),
    "eval": ("Evaluate a model: bbh, mmlu, tydiqa, or loss:FILE.",
             "less_select.evaluation.run:EvalConfig", "less_select.evaluation.run:run_eval"),
    "demo": ("The whole pipeline on built-in synthetic data with a tiny model.",
             "less_select.demo.run:DemoConfig", "less_select.demo.run:run_demo"),
    "dynamic-train": ("Train with dynamic LESS re-selection from the live model and Adam state.",
                      "less_select.dynamic.stage:DynamicTrainConfig",
                      "less_select.dynamic.stage:run_dynamic_train"),
    "compare": ("Compare selection methods at one budget: train, evaluate, report.",
                "less_select.compare:CompareConfig", "less_select.compare:run_compare"),
    "predict": ("Influence prediction: real LESS gradients for a sample (and a cascade), predicted scores for the rest.",
                "less_select.predict.stage:PredictConfig", "less_select.predict.stage:run_predict"),
}


def config_class(command: str):
    return _load(STAGES[command][1])


# command -> function(config, result) -> the text the command prints; the others print their result
# (a dict as JSON). Library code returns results and never prints: printing is the CLI's.
PRINTERS: dict[str, str] = {
    "eval": "less_select.evaluation.run:format_result",
    "compare": "less_select.compare.report:format_summary",
    "demo": "less_select.demo.run:format_summary",
}


def _threads(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return int(text)


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, but a bad flag or value is one line (no usage block), like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    argv = sys.argv[1:] if argv is None else argv
    active = next((a for a in argv if a in STAGES), None)
    parser = _OneLineErrors(prog="less-select", description=(
        "Targeted instruction-data selection with LESS (Xia et al., ICML 2024)."))
    parser.add_argument("--version", action="version", version=f"less-select {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    parser.add_argument("--threads", type=_threads, default=0, dest="torch_threads",
                        help="torch CPU threads (0: leave torch's default).")
    parser.add_argument("--progress", choices=("auto", "bar", "log"), default=None, help=(
        "How long loops report progress: bar (tqdm: count, rate, ETA), log (a line every few "
        "seconds) or auto (bar when stderr is a terminal); default: $LESS_SELECT_PROGRESS, else auto."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    pr = sub.add_parser("run", help="Run the whole pipeline from a YAML config, skipping finished stages.")
    pr.add_argument("config", help="Pipeline YAML file (see examples/ and the README).")
    pr.add_argument("--only", nargs="+", help="Run only these stages.")
    pr.set_defaults(handler=lambda ns: __import__("less_select.pipeline", fromlist=["x"]).run_pipeline_file(
        ns.config, only=ns.only))
    for name, (help_text, cls_path, run_path) in STAGES.items():
        _stage(sub, name, help_text, cls_path, run_path, active=active)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a one-line usage error
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.DEBUG if ns.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .progress import bar_enabled, set_mode, silence_library_bars
    set_mode(ns.progress)  # None: the environment variable, else auto
    if not bar_enabled():  # a log file gets lines, not the libraries' bar redraws
        silence_library_bars()
    if ns.torch_threads:
        import torch
        torch.set_num_threads(ns.torch_threads)
    handler: Callable | None = getattr(ns, "handler", None)
    if handler is None:
        parser.print_help()
        return 1
    try:
        handler(ns)
    except UserError as exc:
        print(f"less-select {ns.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (permissions, disk full): say so on one line
        if ns.verbose:
            raise
        print(f"less-select {ns.command}: error: {exc} (-v shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished chunks/stages are kept and the next run resumes", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
