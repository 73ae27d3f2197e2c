"""``less-select compare``: several selection methods on one pool and target at one budget, each
selection trained with the same settings and evaluated, and a report of metrics, costs, what each
method picked and how much the methods agree.

Layout of ``<output_dir>/``::

    pool/<file>.jsonl          the pool actually used, when ``max_examples`` caps the files
    <less method>_run/         each LESS method's pipeline run folder (warmup, datastore, targets, selected)
    selections/<method>/       each baseline's selection folder (top_p*.jsonl, scores.csv, selection.json)
    train/<method>/            the model trained on each selection (and on the whole pool: ``full``)
    eval/<method>/             evaluation results (``base``: the untrained model)
    costs.json                 measured seconds of every stage that ran (kept for reused stages)
    report/comparison.json     everything below, machine readable
    report/comparison.md       the tables

Modules: ``config`` (the options and how they reach each stage), ``methods`` (the selection methods
behind one interface, and their registry), ``costs`` (measured seconds), ``run`` (the comparison),
``report`` (the report and its markdown).
"""

from .config import CompareConfig, load_compare_config, stage_options
from .report import build_report, format_summary, jaccard_matrix, render_markdown
from .run import pool_composition, prepare_pool, run_compare

__all__ = ["CompareConfig", "load_compare_config", "stage_options", "run_compare", "prepare_pool",
           "pool_composition", "build_report", "render_markdown", "format_summary", "jaccard_matrix"]
