"""Repetition blocking (``block_repeats``, ``concepts_once``): which next words :class:`RepeatBlock` forbids.
Torch-free: the rule is the one search's, the same on both backends."""

from __future__ import annotations

from imgsum.decoding import RepeatBlock

A, AND, DOG, RUNS, CHAIR, TENNIS, BALL, ON = 4, 5, 6, 7, 8, 9, 10, 11
SLOT0, SLOT1 = 20, 21  # slot tokens: <c0> says "dog", <c1> says "tennis ball"
SAYS = {SLOT0: [DOG], SLOT1: [TENNIS, BALL]}


def banned(seq: list[int], concepts_once: bool = False, says: dict | None = SAYS) -> set[int]:
    return set(RepeatBlock([A, AND, ON], concepts_once=concepts_once).banned(seq, says))


def test_a_word_a_third_time_is_blocked_but_not_a_free_word() -> None:
    assert DOG not in banned([A, DOG, RUNS], says=None)
    assert DOG in banned([A, DOG, RUNS, A, DOG, ON], says=None)
    assert A not in banned([A, DOG, A, CHAIR, A, RUNS], says=None)


def test_the_word_just_said_is_blocked_even_a_free_one() -> None:
    assert DOG in banned([A, DOG], says=None)  # no "a dog dog"
    assert A in banned([ON, A], says=None)
    assert SLOT0 in banned([A, DOG])  # nor "dog" then <c0>, which says "dog"


def test_a_three_word_sequence_twice_and_a_two_word_one_three_times_are_blocked() -> None:
    assert CHAIR in banned([A, DOG, CHAIR, A, DOG], says=None)  # "a dog chair" would come again
    # free words, so that only the sequence rule speaks: "on a" a third time, not a second
    assert A in banned([ON, A, DOG, ON, A, CHAIR, ON], says=None)
    assert A not in banned([ON, A, DOG, ON], says=None)


def test_a_slot_token_counts_as_the_words_it_says() -> None:
    # "tennis" said twice, then <c1> ("tennis ball") would say it a third time: the slot token is blocked too.
    assert {TENNIS, SLOT1} <= banned([TENNIS, A, TENNIS])
    assert SLOT0 in banned([DOG, RUNS, SLOT0])  # "dog" twice already, <c0> says it


def test_concepts_once_blocks_a_concept_word_the_second_time_and_its_slot_token() -> None:
    seq = [A, SLOT0, RUNS, ON, A]  # "a dog runs on a"
    assert DOG not in banned(seq) and SLOT0 not in banned(seq)  # the plain rule allows a second "dog"
    assert {DOG, SLOT0} <= banned(seq, concepts_once=True)
    assert CHAIR not in banned(seq + [CHAIR, ON], concepts_once=True)  # not a concept: the plain rule
    assert {BALL, SLOT1} <= banned([A, BALL], concepts_once=True)  # a word of a two-word concept
