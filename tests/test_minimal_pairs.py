"""The shipped minimal-pairs contrast set: schema, counts, one- or two-word edits, and the annotation rules."""

import difflib
import re

import numpy as np
import pandas as pd
import pytest

from skcarl._va_table import DEFAULT_VA_TABLE
from skcarl.datasets import load_minimal_pairs

AFFECT_OPERATORS = {"negation", "intensifier", "downtoner", "antonym", "emotion_swap", "hedging"}
CONTROL_OPERATORS = {"name", "number", "synonym", "neutral_noun", "neutral_insertion"}


def edited_words(original, edited):
    """Words touched by the edit: for each non-equal block of a word-level diff, the longer of its two sides."""
    matcher = difflib.SequenceMatcher(a=original.split(), b=edited.split(), autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")


@pytest.fixture(scope="module")
def pairs():
    return load_minimal_pairs()


def test_edited_words_counts_inserted_deleted_and_replaced_words():
    assert edited_words("I am happy.", "I am not happy.") == 1
    assert edited_words("I was really angry.", "I was angry.") == 1
    assert edited_words("It was very good.", "It was a bit good.") == 2
    assert edited_words("The cat sat.", "The cat sat.") == 0
    assert edited_words("The cat sat on the mat.", "A dog sat on the rug.") == 3


def test_schema_and_dtypes(pairs):
    assert list(pairs.columns) == ["pair_id", "kind", "operator", "original", "edited", "dv", "da"]
    for column in ("pair_id", "dv", "da"):
        assert pairs[column].dtype == np.int64, column
    for column in ("kind", "operator", "original", "edited"):
        assert pd.api.types.is_string_dtype(pairs[column]), column
        assert pairs[column].map(lambda value: isinstance(value, str) and value.strip() != "").all(), column
    assert not pairs.isna().any().any()


def test_counts_per_kind_and_operator(pairs):
    kinds = pairs["kind"].value_counts()
    assert set(kinds.index) == {"affect", "control"}
    assert kinds["affect"] >= 300 and kinds["control"] >= 100, kinds.to_dict()
    affect = pairs.loc[pairs["kind"] == "affect", "operator"].value_counts()
    control = pairs.loc[pairs["kind"] == "control", "operator"].value_counts()
    assert set(affect.index) == AFFECT_OPERATORS and affect.min() >= 40, affect.to_dict()
    assert set(control.index) == CONTROL_OPERATORS and control.min() >= 25, control.to_dict()


def test_ids_and_pairs_are_unique(pairs):
    assert pairs["pair_id"].tolist() == list(range(len(pairs)))
    assert not pairs.duplicated(["original", "edited"]).any()
    # one pair per original sentence: no sentence frame is reused with a different edit
    assert pairs["original"].is_unique


def test_each_edit_touches_one_or_two_words(pairs):
    counts = [edited_words(o, e) for o, e in zip(pairs["original"], pairs["edited"])]
    bad = pairs.loc[[not 1 <= n <= 2 for n in counts], ["pair_id", "original", "edited"]]
    assert bad.empty, bad.to_dict("records")
    lengths = pairs["original"].str.split().str.len()
    assert lengths.between(5, 25).all()
    assert lengths.max() >= 18, "the set should include long sentences as well as short ones"


def test_articles_agree_with_the_next_word(pairs):
    # an inserted or replaced word after "a"/"an" is the commonest way a minimal edit breaks grammar
    sounds_like_a_vowel = {"hour", "honest", "honour"}
    sounds_like_a_consonant = {"one", "university", "unique", "useful"}
    wrong = []
    for text in pd.concat([pairs["original"], pairs["edited"]]):
        for article, word in re.findall(r"\b([Aa]n?) ([A-Za-z]+)", text):
            word = word.lower()
            vowel = (word[0] in "aeiou" or word in sounds_like_a_vowel) and word not in sounds_like_a_consonant
            if (article.lower() == "an") != vowel:
                wrong.append(text)
    assert not wrong, wrong


def test_direction_labels_follow_the_rules_per_kind(pairs):
    assert pairs["dv"].isin([-1, 0, 1]).all() and pairs["da"].isin([-1, 0, 1]).all()
    affect, control = pairs[pairs["kind"] == "affect"], pairs[pairs["kind"] == "control"]
    assert ((affect["dv"] != 0) | (affect["da"] != 0)).all()
    assert (control["dv"] == 0).all() and (control["da"] == 0).all()


def test_direction_labels_follow_the_rules_per_operator(pairs):
    by_operator = dict(tuple(pairs.groupby("operator")))
    # negation and antonym flip valence only; arousal is left out as not confident
    for operator in ("negation", "antonym"):
        rows = by_operator[operator]
        assert (rows["dv"] != 0).all() and (rows["da"] == 0).all(), operator
        assert rows["dv"].nunique() == 2, f"{operator} needs positive and negative originals"
    # intensifiers raise arousal (or leave it unannotated on low-arousal words), downtoners the reverse
    assert by_operator["intensifier"]["da"].isin([0, 1]).all()
    assert by_operator["downtoner"]["da"].isin([0, -1]).all()
    # a hedge always lowers arousal; valence moves toward neutral, so both signs occur
    assert (by_operator["hedging"]["da"] == -1).all()
    assert set(by_operator["hedging"]["dv"]) == {-1, 0, 1}
    # emotion swaps cover every direction on both dimensions
    swaps = by_operator["emotion_swap"]
    assert set(swaps["dv"]) == {-1, 0, 1} and set(swaps["da"]) == {-1, 0, 1}


def test_emotion_swaps_between_table_emotions_follow_their_nrc_values(pairs):
    # where both swapped words are emotion names in skcarl's NRC VAD table, the labels are the signs of the
    # coordinate differences, 0 within 0.15 (the README's rule)
    checked = 0
    for row in pairs[pairs["operator"] == "emotion_swap"].itertuples():
        matcher = difflib.SequenceMatcher(a=row.original.split(), b=row.edited.split(), autojunk=False)
        (tag, i1, i2, j1, j2), = [op for op in matcher.get_opcodes() if op[0] != "equal"]
        old = " ".join(row.original.split()[i1:i2]).strip(".,!?").lower()
        new = " ".join(row.edited.split()[j1:j2]).strip(".,!?").lower()
        if old in DEFAULT_VA_TABLE and new in DEFAULT_VA_TABLE:
            diff = np.subtract(DEFAULT_VA_TABLE[new], DEFAULT_VA_TABLE[old])
            expected = np.where(np.abs(diff) < 0.15, 0, np.sign(diff)).astype(int)
            assert (row.dv, row.da) == tuple(expected), (row.original, old, new, diff)
            checked += 1
    assert checked >= 5


def test_each_dimension_has_enough_directed_pairs_of_both_signs(pairs):
    affect = pairs[pairs["kind"] == "affect"]
    for column in ("dv", "da"):
        signs = affect[column].value_counts()
        assert signs.get(1, 0) >= 60 and signs.get(-1, 0) >= 60, (column, signs.to_dict())


def test_loader_returns_a_fresh_copy():
    first = load_minimal_pairs()
    first.loc[0, "edited"] = "changed"
    del first["da"]
    second = load_minimal_pairs()
    assert second.loc[0, "edited"] != "changed" and "da" in second.columns
