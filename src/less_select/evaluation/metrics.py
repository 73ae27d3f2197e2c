"""Answer metrics: SQuAD normalisation, F1 and exact match (TydiQA); BBH answer extraction and match.

Written for this package after the published definitions: the SQuAD v1.1 ``normalize_answer`` (lower case,
drop punctuation, drop English articles, collapse whitespace) with bag-of-tokens F1, and the HF
``exact_match`` metric with ``ignore_case`` and ``ignore_punctuation`` that open-instruct uses for BBH.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_BBH_ANSWER = re.compile(r"So the answer is (.*?)\.")


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_exact(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def squad_f1(prediction: str, truth: str) -> float:
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_over(metric, prediction: str, truths: Iterable[str]) -> float:
    """SQuAD scores a prediction against its best-matching gold answer."""
    scores = [metric(prediction, t) for t in truths]
    return max(scores) if scores else 0.0


def extract_bbh_answer(output: str) -> str:
    """The text between the first "So the answer is " and the next period; without that phrase, the
    output up to its first blank line (open-instruct's rule)."""
    found = _BBH_ANSWER.search(output)
    if found:
        return found.group(1).strip()
    return output.strip().split("\n\n")[0].strip()


def bbh_exact_match(prediction: str, target: str) -> float:
    """Case- and punctuation-insensitive equality (whitespace is kept, as in HF ``exact_match``)."""
    return float(prediction.lower().translate(_PUNCT_TABLE) == target.lower().translate(_PUNCT_TABLE))
