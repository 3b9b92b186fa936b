"""Answer correctness: normalisation, option letters, never substring containment."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio_thinker.rewards.accuracy import (
    answer_letter_index,
    is_correct,
    normalize_answer,
    option_letter,
)

CHOICES = ["one beep", "two beeps", "three beeps", "four beeps"]


@pytest.mark.parametrize(
    "answer",
    [
        "two beeps", "Two Beeps", "  two   beeps ", "two beeps.", "'two beeps'", '"Two beeps!"',
        "(two beeps)", "[two beeps]", "**two beeps**", "B. two beeps", "(B) two beeps",
        "B) two beeps", "b: two beeps", "(b) Two beeps.", "`two beeps`",
    ],
)
def test_correct_variants(answer):
    assert is_correct(answer, gold="two beeps", choices=CHOICES)


@pytest.mark.parametrize(
    "answer",
    [
        "beeps", "two", "two beeps three beeps", "one beep, two beeps", "two beeps or three beeps",
        "the answer is two beeps", "twobeeps", "", "   ", "B", "(B)", "three beeps", None,
    ],
)
def test_wrong_variants(answer):
    assert not is_correct(answer, gold="two beeps", choices=CHOICES)


def test_letters_only_when_prompt_is_lettered():
    assert is_correct("B", gold="two beeps", choices=CHOICES, lettered=True)
    assert is_correct("(b).", gold="two beeps", choices=CHOICES, lettered=True)
    assert not is_correct("C", gold="two beeps", choices=CHOICES, lettered=True)
    assert not is_correct("E", gold="two beeps", choices=CHOICES, lettered=True)  # out of range
    assert not is_correct("B", gold="two beeps", choices=CHOICES, lettered=False)


def test_punctuation_that_carries_meaning_is_kept():
    notes = ["C", "C#", "D", "E"]
    assert is_correct("C#", gold="C#", choices=notes)
    assert not is_correct("C", gold="C#", choices=notes)
    assert not is_correct("C#", gold="C", choices=notes)
    assert is_correct("c#.", gold="C#", choices=notes)


def test_single_letter_choices_are_not_mistaken_for_labels():
    notes = ["A", "B", "C", "D"]
    assert is_correct("A", gold="A", choices=notes)
    assert not is_correct("A", gold="B", choices=notes)
    assert is_correct("B.", gold="B", choices=notes)
    # with a lettered prompt the letter names the option (here the same thing)
    assert is_correct("(C)", gold="C", choices=notes, lettered=True)


def test_label_only_stripped_for_letters_of_existing_options():
    choices = ["yes", "no"]
    assert normalize_answer("A. yes", n_choices=2) == "yes"
    assert normalize_answer("E. yes", n_choices=2) == "e. yes"


def test_gold_must_be_a_choice():
    with pytest.raises(ValueError, match="not one of the choices"):
        is_correct("x", gold="missing", choices=CHOICES)


def test_letter_helpers():
    assert option_letter(0) == "A" and option_letter(25) == "Z"
    with pytest.raises(ValueError):
        option_letter(26)
    assert answer_letter_index("d", 4) == 3
    assert answer_letter_index("d", 3) is None
    assert answer_letter_index("dog", 4) is None


@given(st.lists(st.text(alphabet="abcdefgh xyz", min_size=1, max_size=12), min_size=2, max_size=5, unique=True))
def test_containment_never_suffices(choices):
    """A response listing every choice is never correct (unless only one choice normalises non-empty)."""
    gold = choices[0]
    everything = " ".join(choices)
    if normalize_answer(everything) != normalize_answer(gold):
        assert not is_correct(everything, gold=gold, choices=choices)


@given(st.lists(st.text(min_size=1, max_size=15), min_size=2, max_size=5, unique=True), st.data())
def test_the_gold_text_itself_is_always_correct(choices, data):
    gold = data.draw(st.sampled_from(choices))
    if normalize_answer(gold, n_choices=len(choices)):
        assert is_correct(gold, gold=gold, choices=choices)
