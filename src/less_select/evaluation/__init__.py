"""Target sets (LESS-exact BBH/MMLU/TydiQA builders, generic files), benchmark evaluators, target loss.

Heavy modules are imported lazily; the public entry points are:

* :func:`~less_select.data.targets.build_target_examples`
* :func:`~less_select.evaluation.loss.target_loss`
* :func:`~less_select.evaluation.mmlu.evaluate_mmlu`, :func:`~less_select.evaluation.bbh.evaluate_bbh`,
  :func:`~less_select.evaluation.tydiqa.evaluate_tydiqa`
* :class:`~less_select.evaluation.run.EvalConfig`, :func:`~less_select.evaluation.run.run_eval`
"""

from .run import EvalConfig, run_eval, run_many
from ..data.targets import build_target_examples

__all__ = ["EvalConfig", "build_target_examples", "run_eval", "run_many"]
