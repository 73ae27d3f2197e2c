import math
import re
from collections import Counter

import numpy as np
import pytest

from less_select.baselines import BM25Selector, make_baseline

from .helpers import ex, random_examples

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda sigma omega river "
         "mountain forest ocean desert valley island").split()


def test_exact_duplicate_of_target_ranks_first():
    pool = random_examples(WORDS, 60, seed=0)
    target = ex("t", "what is the capital of mountain valley island", "the answer is omega river")
    pool.insert(37, ex("dup", target.messages[0]["content"], target.messages[1]["content"]))
    scores = make_baseline("bm25").score(pool, [target])
    assert int(np.argmax(scores)) == 37
    assert scores[37] > np.sort(scores)[-2]


def _reference_lucene(docs, query, k1=1.5, b=0.75, stop=frozenset()):
    tok = lambda t: [w for w in re.findall(r"(?u)\b\w\w+\b", t.lower()) if w not in stop]
    dt = [tok(d) for d in docs]
    avgdl = sum(map(len, dt)) / len(dt)
    df = Counter(w for d in dt for w in set(d))
    out = []
    for d in dt:
        tf = Counter(d)
        s = 0.0
        for w in tok(query):
            if tf[w]:
                idf = math.log(1 + (len(dt) - df[w] + 0.5) / (df[w] + 0.5))
                s += idf * tf[w] / (tf[w] + k1 * (1 - b + b * len(d) / avgdl))
        out.append(s)
    return np.array(out)


def test_scores_are_lucene_bm25():
    pool = random_examples(WORDS, 30, seed=1)
    target = random_examples(WORDS, 1, seed=2, prefix="t")[0]
    got = make_baseline("bm25", stopwords="none").score(pool, [target])
    ref = _reference_lucene([p.text for p in pool], target.text)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_aggregates_by_subtask():
    pool = random_examples(WORDS, 25, seed=3)
    targets = random_examples(WORDS, 5, seed=4, prefix="t")
    for t, s in zip(targets, ["a", "b", "b", "b", "a"]):
        t.subtask = s
    sel = make_baseline("bm25")
    cols = np.stack([sel.score(pool, [t]) for t in targets], axis=1)
    expected = np.maximum(cols[:, [0, 4]].mean(1), cols[:, [1, 2, 3]].mean(1))
    np.testing.assert_allclose(sel.score(pool, targets), expected, rtol=1e-6)


def test_target_with_no_pool_token_scores_zero():
    pool = random_examples(WORDS, 5, seed=5)
    out = make_baseline("bm25").score(pool, [ex("t", "zzzz qqqq", "xxxx")])
    np.testing.assert_array_equal(out, np.zeros(5))


def test_stopwords_removed_by_default():
    pool = [ex(0, "the the the the", "of of"), ex(1, "omega", "river")]
    out = BM25Selector().score(pool, [ex("t", "the of", "omega")])
    assert out[1] > 0 and out[0] == pytest.approx(0.0)
