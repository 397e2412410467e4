from imgsum.text import Vocabulary, tokenize


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
