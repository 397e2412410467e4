from imgsum.concepts import render_slots
from imgsum.text import Vocabulary, agree_articles, article, tokenize


def test_tokenizer_keeps_numbers_and_hyphenated_words():
    assert tokenize("Two dogs, 3 cats and a T-shirt-wearing man's hat!") == [
        "two", "dogs", "3", "cats", "and", "a", "t-shirt-wearing", "man's", "hat"]


def test_vocabulary_counts_only_what_it_is_given_and_round_trips():
    vocab = Vocabulary.build(["a dog runs", "a dog sits", "a cat"], min_count=2)
    assert vocab.itos[4:] == ["a", "dog"]
    ids = vocab.encode("A dog flies")
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id and ids[3] == vocab.unk_id
    assert vocab.decode(ids[1:] + [7, 7]) == "a dog"  # stops at <eos>, drops specials
    assert Vocabulary.from_list(vocab.to_list()).itos == vocab.itos


def test_articles_agree_with_the_word_they_stand_before() -> None:
    words = "a abacus and an dog near a unicycle , an hour , a european and a 3".split()
    assert agree_articles(words) == "an abacus and a dog near a unicycle , an hour , a european and a 3".split()
    assert article("Otter") == "an" and article("one") == "a" and article("x") == "a"


def test_a_slot_word_gets_its_article() -> None:
    slots = [("abacus", "abaci"), ("dog", "dogs")]
    assert render_slots(["a", "<c0>", "near", "an", "<c1>"], slots) == "an abacus near a dog"
