"""Which language-model sentences ``scripts/synthetic_captions.py`` keeps as training captions (no model needed)."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("torch", reason="the script runs the language model on torch (the train extra)")

from conftest import load_script  # noqa: E402

synthetic = load_script("synthetic_captions")


def test_a_caption_that_names_its_word_once_is_kept_in_lower_case() -> None:
    assert synthetic.clean("A koala is sitting on a tree.", "koala") == "a koala is sitting on a tree"
    assert synthetic.clean("two sharks swim near a coral reef", "shark") == "two sharks swim near a coral reef"


@pytest.mark.parametrize("text", [
    "a dog runs across a field",  # does not name it
    "a koala is a marsupial that lives in trees",  # a definition
    "a pizza is a type of food made from dough",
    "a koala is sitting on a koala",  # names it twice
    "a koala",  # too short
    "a koala sits on 3 trees",  # not plain words
])
def test_other_sentences_are_dropped(text: str) -> None:
    assert synthetic.clean(text, "koala" if "pizza" not in text else "pizza") is None


def test_each_class_is_asked_about_its_words_in_turn_and_the_prefix_holds_three_examples() -> None:
    table = {"classes": [{"wnid": "n1", "words": ["tench", "fish"]}, {"wnid": "n2", "words": ["koala"]}]}
    assert synthetic.jobs(table, 3) == [("n1", "tench"), ("n1", "fish"), ("n1", "tench"),
                                        ("n2", "koala"), ("n2", "koala"), ("n2", "koala")]
    prefix = synthetic.prefix(random.Random(0))
    assert prefix.count("photo of a ") == 3 and prefix.endswith("\n")
