"""less-select: targeted instruction-data selection with LESS (Xia et al., ICML 2024).

The package mirrors the pipeline: ``data`` (reading and encoding examples), ``training`` (warmup and
final LoRA/full training through the HF Trainer, checkpoint reading), ``gradients`` (batched
per-example LoRA gradients and Adam features), ``projection`` (random projections), ``datastore``
(the on-disk gradient store), ``scoring`` and ``selection`` (influence and top-k), ``evaluation``
(target tasks and benchmarks), ``baselines`` (random, BM25, DSIR, RDS), ``pipeline`` and ``cli``.
"""

__version__ = "0.1.0"
