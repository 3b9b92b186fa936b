"""The per-response reward manager in verl's V1 reward loop: decoding, modes, EOS, the judge seam.

Inputs are built the way verl builds them (the agent loop's ``_compute_score`` and the colocated
``RewardLoopManager.compute_rm_score``), with a small tokenizer trained here (no downloads) whose
``<think>``/``<answer>`` tags are *special* tokens, the hard case for decoding.
"""

import asyncio
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from verl import DataProto

from audio_thinker.main_grpo import CONFIG_DIR, CONFIG_NAME
from audio_thinker.verl_ext.reward_manager import (
    CONSISTENCY_FAILURE_KEY,
    CONSISTENCY_KEY,
    QUALITY_FAILURE_KEY,
    QUALITY_KEY,
    REGISTERED_NAME,
    AudioThinkerRewardManager,
    judgements_from_info,
    parsed_from_info,
)
from audio_thinker.rewards.parsing import parse_response
from audio_thinker.rewards.verdict import JudgeFailure

SPECIAL = ["<|endoftext|>", "<|im_end|>", "<think>", "</think>", "<answer>", "</answer>"]
CHOICES = ["2", "3", "4", "5"]
GOLD = "3"
EXTRA_INFO = {
    "question": "How many beeps?", "choices": np.array(CHOICES, dtype=object), "answer": GOLD,
    "task": "count_beeps", "difficulty": "medium", "index": 7,
}


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["I hear three short beeps, then silence.", "The answer is 3. Two, three, four, five!"] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[2:], clean_up_tokenization_spaces=False,
    )


def make_config(**reward):
    return OmegaConf.create({"audio_thinker": {"reward": reward}})


def agent_loop_item(tokenizer, response: str, *, prompt="<|im_end|>How many beeps?", extra_info=EXTRA_INFO):
    """One trajectory as verl's agent loop hands it to the reward worker (n=1, attention all ones)."""
    prompts = torch.tensor(tokenizer.encode(prompt), dtype=torch.int64)
    responses = torch.tensor(tokenizer.encode(response), dtype=torch.int64)
    input_ids = torch.cat([prompts, responses])
    kwargs = {
        "data_source": "synthetic_aqa", "reward_model": {"style": "rule", "ground_truth": GOLD},
        "extra_info": extra_info, "uid": "u0", "global_steps": 3,
    }
    batch = TensorDict(
        {"prompts": prompts[None], "responses": responses[None], "input_ids": input_ids[None],
         "attention_mask": torch.ones_like(input_ids)[None],
         "position_ids": torch.arange(len(input_ids))[None]},
        batch_size=1,
    )
    non_tensor = {k: np.array([v]) for k, v in kwargs.items()}
    non_tensor["extra_info"] = np.empty(1, dtype=object)
    non_tensor["extra_info"][0] = extra_info
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def padded_item(tokenizer, response: str, width: int):
    """A right-padded row as in the colocated path (pad tokens with attention 0)."""
    item = agent_loop_item(tokenizer, response)
    ids = item.batch["responses"][0]
    pad = torch.full((width - len(ids),), tokenizer.pad_token_id, dtype=torch.int64)
    prompt_mask = torch.ones_like(item.batch["prompts"][0])
    item.batch = TensorDict(
        {"prompts": item.batch["prompts"], "responses": torch.cat([ids, pad])[None],
         "attention_mask": torch.cat([prompt_mask, torch.ones_like(ids), torch.zeros_like(pad)])[None]},
        batch_size=1,
    )
    return item


def run(manager, item):
    return asyncio.run(manager.run_single(item))


@pytest.fixture
def manager(tokenizer):
    return AudioThinkerRewardManager(make_config(), tokenizer, compute_score=None)


def test_tags_are_special_tokens_in_this_tokenizer(tokenizer):
    ids = tokenizer.encode("<think>a</think><answer>3</answer>")
    assert "<think>" not in tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize(
    "response, mode, acc, fmt, counts_as_think",
    [
        ("<think>I hear three short beeps</think> <answer>3</answer><|im_end|>", "think", 1.0, 1.0, True),
        ("<think>two, then silence</think><answer>2</answer><|im_end|>", "think", 0.0, 1.0, True),
        ("<answer>3</answer><|im_end|>", "no_think", 1.0, 1.0, False),
        ("<think> </think><answer>5</answer><|im_end|>", "no_think", 0.0, 1.0, False),
        ("<think>three beeps</think><|im_end|>", "malformed", 0.0, 0.0, True),
        ("<answer>3</answer> because three<|im_end|>", "malformed", 0.0, 0.0, False),
        ("3<|im_end|>", "malformed", 0.0, 0.0, False),
    ],
)
def test_modes_and_rule_rewards(manager, tokenizer, response, mode, acc, fmt, counts_as_think):
    out = run(manager, agent_loop_item(tokenizer, response))
    info = out["reward_extra_info"]
    assert out["reward_score"] == acc
    got = (info["mode"], info["acc"], info["format"], info["counts_as_think"])
    assert got == (mode, acc, fmt, counts_as_think)
    assert info["response_tokens"] == len(tokenizer.encode(response))
    assert (info["difficulty"], info["task"]) == ("medium", "count_beeps")
    parsed = parse_response(response)
    rebuilt = parsed_from_info(info)
    assert rebuilt.mode == parsed.mode and rebuilt.answer == parsed.answer
    assert rebuilt.counts_as_think == parsed.counts_as_think
    assert info["think_chars"] == len(parsed.think or "")
    json.dumps(info)  # JSON-able scalars only
    assert CONSISTENCY_KEY not in info and QUALITY_KEY not in info  # no judge yet


@pytest.mark.parametrize(
    "response",
    [
        "<answer>3</answer>",  # no EOS at all (cut at max length)
        "<answer>3</answer><|im_end|><|endoftext|>",  # EOS then a pad token the engine kept
        "<answer>3</answer><|endoftext|><|endoftext|>",  # pad == Qwen's <|endoftext|>
        "  <answer>3</answer>\n<|im_end|>",
    ],
)
def test_end_of_sequence_and_pad_tokens_are_ignored(manager, tokenizer, response):
    info = run(manager, agent_loop_item(tokenizer, response))["reward_extra_info"]
    assert (info["mode"], info["acc"]) == ("no_think", 1.0)


def test_right_padded_rows_score_only_valid_tokens(manager, tokenizer):
    response = "<think>three</think><answer>3</answer><|im_end|>"
    out = run(manager, padded_item(tokenizer, response, width=40))
    assert out["reward_extra_info"]["mode"] == "think"
    assert out["reward_extra_info"]["response_tokens"] == len(tokenizer.encode(response))
    assert out["reward_score"] == 1.0


def test_text_after_eos_is_malformed(manager, tokenizer):
    out = run(manager, agent_loop_item(tokenizer, "<answer>3</answer><|im_end|>three"))
    assert out["reward_extra_info"]["mode"] == "malformed"


def test_lettered_choices_follow_the_config(tokenizer):
    lettered = AudioThinkerRewardManager(make_config(lettered_choices=True), tokenizer, None)
    plain = AudioThinkerRewardManager(make_config(), tokenizer, None)
    item = agent_loop_item(tokenizer, "<answer>B</answer><|im_end|>")
    assert run(lettered, item)["reward_score"] == 1.0  # B is "3" among 2, 3, 4, 5
    assert run(plain, item)["reward_score"] == 0.0


def test_rows_without_difficulty_or_task(manager, tokenizer):
    info = {"choices": CHOICES, "question": "q"}
    out = run(manager, agent_loop_item(tokenizer, "<answer>3</answer>", extra_info=info))
    assert (out["reward_extra_info"]["difficulty"], out["reward_extra_info"]["task"]) == ("", "")


class FakeJudge:
    """Stands in for the judge pool: records calls, fails on request."""

    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    async def judge(self, *, question, choices, think, answer):
        self.calls.append((question, tuple(choices), think, answer))
        if self.fail:
            raise TimeoutError("judge timed out")
        return {"consistency": 1, "quality": 0.7}


def test_judge_seam_sends_only_think_responses(tokenizer):
    manager = AudioThinkerRewardManager(make_config(), tokenizer, None)
    manager.judge_client = FakeJudge()
    think = run(manager, agent_loop_item(tokenizer, "<think>three beeps</think><answer>3</answer>"))
    no_think = run(manager, agent_loop_item(tokenizer, "<answer>3</answer>"))
    assert [(q, t, a) for q, _, t, a in manager.judge_client.calls] == [("How many beeps?", "three beeps", "3")]
    assert manager.judge_client.calls[0][1], "the judge sees the row's choices"
    assert (think["reward_extra_info"][CONSISTENCY_KEY], think["reward_extra_info"][QUALITY_KEY]) == (1, 0.7)
    assert no_think["reward_extra_info"][CONSISTENCY_KEY] is None
    assert no_think["reward_extra_info"][QUALITY_KEY] is None
    manager.judge_client = FakeJudge(fail=True)
    failed = run(manager, agent_loop_item(tokenizer, "<think>three beeps</think><answer>3</answer>"))
    assert failed["reward_extra_info"][CONSISTENCY_KEY] is None and failed["reward_score"] == 1.0


class VerdictJudge:
    """Answers every call with one fixed verdict."""

    def __init__(self, verdict):
        self.verdict = verdict

    async def judge(self, *, question, choices, think, answer):
        return dict(self.verdict)


JUDGE_COLUMNS = (CONSISTENCY_KEY, CONSISTENCY_FAILURE_KEY, QUALITY_KEY, QUALITY_FAILURE_KEY)


def test_a_missing_verdict_is_recorded_with_its_reason(tokenizer):
    """Unparseable (the judge answered something else) and unavailable (no answer) stay apart
    from the judge client to the trainer; numbers and reasons live in separate columns."""
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    manager = AudioThinkerRewardManager(make_config(mode="atar_cr_tr"), tokenizer, None)
    think = agent_loop_item(tokenizer, "<think>three beeps</think><answer>3</answer>")
    cases = [
        ({"consistency": 1, "quality": 0.7}, (1, "", 0.7, "")),
        ({"consistency": JudgeFailure.UNPARSEABLE, "quality": 0.4}, (None, "unparseable", 0.4, "")),
        ({"consistency": 0, "quality": None}, (0, "", None, "unavailable")),
    ]
    infos = []
    for verdict, want in cases:
        manager.judge_client = VerdictJudge(verdict)
        info = run(manager, think)["reward_extra_info"]
        assert tuple(info[k] for k in JUDGE_COLUMNS) == want
        assert judgements_from_info(info, "consistency") == verdict["consistency"]
        expected_quality = JudgeFailure.UNAVAILABLE if verdict["quality"] is None else verdict["quality"]
        assert judgements_from_info(info, "quality") == expected_quality
        json.dumps(info)
        infos.append(info)
    manager.judge_client = FakeJudge(fail=True)  # the call itself raised: both unavailable
    info = run(manager, think)["reward_extra_info"]
    assert tuple(info[k] for k in JUDGE_COLUMNS) == (None, "unavailable", None, "unavailable")
    infos.append(info)
    no_think = run(manager, agent_loop_item(tokenizer, "<answer>3</answer>"))["reward_extra_info"]
    assert tuple(no_think[k] for k in JUDGE_COLUMNS) == (None, "", None, "")
    infos.append(no_think)
    # a mode without the quality judge records no reason for the quality verdict it never asked for
    atar_cr = AudioThinkerRewardManager(make_config(mode="atar_cr"), tokenizer, None)
    atar_cr.judge_client = VerdictJudge({"consistency": 1, "quality": None})
    info = run(atar_cr, think)["reward_extra_info"]
    assert tuple(info[k] for k in JUDGE_COLUMNS) == (1, "", None, "")
    # verl's validation metrics average the numeric columns and skip the string ones
    columns = {k: [i[k] for i in infos] for k in infos[0]}
    out = process_validation_metrics(["synthetic_aqa"] * len(infos), ["u0"] * len(infos), columns)
    assert dict(out["synthetic_aqa"][QUALITY_KEY])["mean@2"] == pytest.approx(0.55)  # 0.7 and 0.4
    assert QUALITY_FAILURE_KEY not in out["synthetic_aqa"]


def test_config_selects_this_manager_through_verls_loader(tmp_path, tokenizer):
    """conf/ names the class via importlib; verl's RewardLoopWorker loads and runs it end to end."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    assert get_reward_manager_cls(REGISTERED_NAME) is AudioThinkerRewardManager
    tokenizer.save_pretrained(tmp_path)
    base = OmegaConf.load(f"{CONFIG_DIR}/{CONFIG_NAME}.yaml")
    config = OmegaConf.create({
        "actor_rollout_ref": {"model": {"path": str(tmp_path), "tokenizer_path": str(tmp_path)}},
        "reward": {
            "reward_manager": base.reward.reward_manager,
            "reward_model": {"enable": False},
            "custom_reward_function": {"path": None},
        },
        "audio_thinker": {"reward": {"mode": "atar"}},
    })
    worker = RewardLoopWorker(config)
    assert isinstance(worker.reward_manager, AudioThinkerRewardManager)
    responses = ("<answer>3</answer>", "<think>x</think><answer>2</answer>")
    items = [padded_item(tokenizer, r, width=40) for r in responses]
    outs = asyncio.run(worker.compute_score_batch(DataProto.concat(items)))
    assert [o["reward_score"] for o in outs] == [1.0, 0.0]
    # verl's colocated path stacks each key across responses with np.array
    stacked = {k: np.array([o["reward_extra_info"][k] for o in outs]) for k in outs[0]["reward_extra_info"]}
    assert stacked["mode"].tolist() == ["no_think", "think"]


def test_loading_the_module_again_from_its_file_does_not_clash():
    """verl's file:// loading re-executes the module; registration must not reject the new class."""
    import audio_thinker.verl_ext.reward_manager as module
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.utils.import_utils import load_extern_object

    cls = load_extern_object(f"file://{module.__file__}", "AudioThinkerRewardManager")
    assert cls.__qualname__ == "AudioThinkerRewardManager"
    assert get_reward_manager_cls(REGISTERED_NAME) is AudioThinkerRewardManager


@pytest.mark.parametrize("arch", ["qwen2_audio", "qwen2_5_omni_thinker"])
def test_with_the_tiny_models_qwen_tokenizers(arch):
    """The tiny backbones' tokenizers (real Qwen special tokens) give the same modes."""
    tiny = pytest.importorskip("audio_thinker.toy.tiny")
    tok = tiny.build_tokenizer(arch)
    manager = AudioThinkerRewardManager(make_config(), tok, None)
    cases = {
        "<think>three beeps</think><answer>3</answer><|im_end|>": ("think", 1.0),
        "<answer>2</answer><|im_end|><|endoftext|>": ("no_think", 0.0),
        "<think>three beeps<|im_end|>": ("malformed", 0.0),
    }
    for response, (mode, acc) in cases.items():
        info = run(manager, agent_loop_item(tok, response))["reward_extra_info"]
        assert (info["mode"], info["acc"]) == (mode, acc), response


def test_judge_modes_get_the_pool_client_and_rule_modes_none(tokenizer):
    from reward_workers.pool import PoolJudgeClient

    for mode in ("atar_cr", "atar_cr_tr"):
        client = AudioThinkerRewardManager(make_config(mode=mode), tokenizer, None).judge_client
        assert isinstance(client, PoolJudgeClient), mode
    for mode in ("accuracy", "atar"):
        assert AudioThinkerRewardManager(make_config(mode=mode), tokenizer, None).judge_client is None
