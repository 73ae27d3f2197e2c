from less_select.evaluation.metrics import (bbh_exact_match, best_over, extract_bbh_answer,
                                            normalize_answer, squad_exact, squad_f1)


def test_squad_normalisation():
    assert normalize_answer("The  Cat, sat on a MAT!") == "cat sat on mat"
    assert normalize_answer("an apple") == "apple"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_squad_f1_and_em():
    assert squad_exact("the Mat.", "mat") == 1.0
    assert squad_f1("on the mat", "on the mat") == 1.0
    assert squad_f1("sat on mat", "on the mat") == 2 * (2 / 3) * 1.0 / ((2 / 3) + 1.0)
    assert squad_f1("", "mat") == 0.0
    assert squad_f1("dog", "mat") == 0.0
    assert best_over(squad_f1, "mat", ["dog", "the mat"]) == 1.0
    assert best_over(squad_exact, "x", []) == 0.0


def test_bbh_extraction_and_match():
    out = " Let's think step by step.\nA is True. So the answer is (B). Extra. So the answer is (C)."
    assert extract_bbh_answer(out) == "(B)"
    assert extract_bbh_answer("  no phrase here\n\nmore") == "no phrase here"
    assert bbh_exact_match("(B)", "(b)") == 1.0
    assert bbh_exact_match("True", "False") == 0.0
    assert bbh_exact_match("a  b", "a b") == 0.0  # whitespace is not normalised (as in HF exact_match)
    # the answer stops at the first period, so decimals are cut (open-instruct behaviour)
    assert extract_bbh_answer("So the answer is 3.5.") == "3"
