"""Every case of the response grammar (DESIGN.md section 3)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio_thinker.rewards.parsing import ResponseMode, parse_response, strip_eos

THINK, NO_THINK, MALFORMED = ResponseMode.THINK, ResponseMode.NO_THINK, ResponseMode.MALFORMED


@pytest.mark.parametrize(
    ("text", "mode", "think", "answer"),
    [
        # well-formed THINK
        ("<think>a</think><answer>b</answer>", THINK, "a", "b"),
        ("<think> a \n b </think>\n\n <answer> x y </answer>", THINK, "a \n b", "x y"),
        ("  <think>a</think><answer>b</answer>  \n", THINK, "a", "b"),
        ("<think>a</think><answer>b</answer><|im_end|>", THINK, "a", "b"),
        ("<think>a</think><answer>b</answer> <|im_end|>\n<|endoftext|>", THINK, "a", "b"),
        ("<think>x < y > z</think><answer>b</answer>", THINK, "x < y > z", "b"),
        ("<think>a</think><answer><Think>b</Think></answer>", THINK, "a", "<Think>b</Think>"),
        # well-formed NO-THINK
        ("<answer>b</answer>", NO_THINK, None, "b"),
        ("<answer>\n b \n</answer><|endoftext|>", NO_THINK, None, "b"),
        ("<think></think><answer>b</answer>", NO_THINK, None, "b"),
        ("<think> </think><answer>b</answer>", NO_THINK, None, "b"),
        ("<think>\n\t</think>\n<answer>b</answer>", NO_THINK, None, "b"),
        # MALFORMED
        ("", MALFORMED, None, None),
        ("   ", MALFORMED, None, None),
        ("<|im_end|>", MALFORMED, None, None),
        ("b", MALFORMED, None, None),
        ("<think>a</think>", MALFORMED, None, None),  # missing answer
        ("<think>a</think>b", MALFORMED, None, None),
        ("<answer></answer>", MALFORMED, None, None),  # empty answer
        ("<answer>  </answer>", MALFORMED, None, None),
        ("<think>a</think><answer> </answer>", MALFORMED, None, None),
        ("<answer>b</answer> because it is", MALFORMED, None, None),  # text after </answer>
        ("<answer>b</answer><answer>c</answer>", MALFORMED, None, None),  # two answers
        ("<answer>b</answer>\n<answer>c</answer>", MALFORMED, None, None),
        ("<think>a</think><answer>b</answer><answer>c</answer>", MALFORMED, None, None),
        ("<think>a</think><think>b</think><answer>c</answer>", MALFORMED, None, None),  # extra think
        ("<think>a<think>b</think></think><answer>c</answer>", MALFORMED, None, None),  # nested
        ("<think>a<answer>b</answer></think><answer>c</answer>", MALFORMED, None, None),
        ("<answer>a<answer>b</answer></answer>", MALFORMED, None, None),
        ("<answer>a</think></answer>", MALFORMED, None, None),
        ("<think>a<answer>b</answer>", MALFORMED, None, None),  # unbalanced
        ("<think>a</answer>", MALFORMED, None, None),
        ("<answer>b", MALFORMED, None, None),
        ("b</answer>", MALFORMED, None, None),
        ("<answer>b</think>", MALFORMED, None, None),
        ("Sure! <answer>b</answer>", MALFORMED, None, None),  # text before the first tag
        ("Sure! <think>a</think><answer>b</answer>", MALFORMED, None, None),
        ("<answer>b</answer><think>a</think>", MALFORMED, None, None),  # wrong order
        ("<think>a</think> then <answer>b</answer>", MALFORMED, None, None),  # text between
        ("<|im_end|><answer>b</answer>", MALFORMED, None, None),  # eos only stripped at the end
        ("<answer>b</answer><|im_end|> more", MALFORMED, None, None),
        ("<ANSWER>b</ANSWER>", MALFORMED, None, None),  # tags are case-sensitive
    ],
)
def test_grammar(text, mode, think, answer):
    parsed = parse_response(text)
    assert parsed.mode is mode
    assert parsed.think == think
    assert parsed.answer == answer
    assert parsed.well_formed is (mode is not MALFORMED)


@pytest.mark.parametrize(
    ("text", "counts_as_think"),
    [
        ("<think>a</think><answer>b</answer>", True),
        ("<answer>b</answer>", False),
        ("<think> </think><answer>b</answer>", False),  # empty think block is NO-THINK
        ("<think>a</think>", True),  # malformed with <think> counts as THINK
        ("<think>a", True),
        ("<answer>b</answer> trailing", False),  # malformed without <think> counts as NO-THINK
        ("garbage", False),
        ("</think><answer>b</answer>", False),  # only the opening tag decides
    ],
)
def test_mode_for_think_ratio(text, counts_as_think):
    assert parse_response(text).counts_as_think is counts_as_think


def test_strip_eos_only_trailing_runs():
    assert strip_eos("<|im_end|>x<|im_end|><|im_end|>") == "<|im_end|>x"
    assert strip_eos("x", eos_tokens=()) == "x"
    assert strip_eos("x</s>", eos_tokens=("</s>",)) == "x"


def test_custom_eos_tokens():
    assert parse_response("<answer>b</answer></s>", eos_tokens=("</s>",)).mode is NO_THINK
    assert parse_response("<answer>b</answer></s>").mode is MALFORMED


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError, match="must be str"):
        parse_response(None)  # type: ignore[arg-type]


_TAG_FREE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40
).filter(lambda s: "<" not in s and ">" not in s)


@given(think=_TAG_FREE, answer=_TAG_FREE, gap=st.sampled_from(["", " ", "\n\n"]))
def test_constructed_responses_round_trip(think, answer, gap):
    parsed = parse_response(f"<think>{think}</think>{gap}<answer>{answer}</answer>")
    if not answer.strip():
        assert parsed.mode is MALFORMED
    elif think.strip():
        assert (parsed.mode, parsed.think, parsed.answer) == (THINK, think.strip(), answer.strip())
    else:
        assert (parsed.mode, parsed.think, parsed.answer) == (NO_THINK, None, answer.strip())


@given(st.text(max_size=80))
def test_never_raises_on_any_text(text):
    parsed = parse_response(text)
    assert parsed.mode in ResponseMode
    if parsed.well_formed:
        assert parsed.answer and parsed.answer == parsed.answer.strip()
