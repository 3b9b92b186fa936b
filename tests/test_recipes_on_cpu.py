"""Recipes (``backbone=<backbone> experiment=<row>``): every one composes, validates and matches its row.

1. The groups: every Table 1 row has an experiment file of its entry point and every backbone a
   recipe of each row; the files set only keys the config has (a typo in a config file would add
   a new key silently); every ``backbone_experiment`` file names a recipe or is included by one;
   the table of what is not config (labels, costs, paper figures) covers exactly the recipes.
2. Every recipe (backbones x experiment files, so a new file is tested too) is composed with hydra's
   compose API and validated by the entry point's own checks (for GRPO also verl's
   ``validate_config``, as ``main_grpo`` does before Ray). GPU recipes carry the paper's
   hyper-parameters, prompt and reward modes match the row, judge rows give the judge GPUs of its
   own and the GPU counts add up, tiny_cpu recipes run on CPU.
3. The tiny_cpu variant of each GRPO row runs one training step through the real command
   (``python -m audio_thinker.recipes run tiny_cpu/<row> ...``). ``make test`` runs two of them
   (``grpo``: no judge; ``grpo_atar_cr_tr``: the judge pool), ``pytest -m recipes`` all five.
4. ``docs/recipes.md`` lists every recipe with its command, cost and the paper's figures.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from audio_thinker import compose as composing
from audio_thinker import recipes
from audio_thinker.recipes import RecipeError, command, list_recipes, load_recipe, parse_override

REPO = Path(__file__).resolve().parents[1]
NAMES = list_recipes()
BACKBONES = ("qwen2_audio_7b", "qwen2_5_omni_7b", "tiny_cpu")
#: row id -> (entry point, prompt mode, reward mode); SFT rows have no GRPO reward
ROWS = {
    "sft": ("audio_thinker.main_sft", None, None),
    "sft_cot": ("audio_thinker.main_sft", None, None),
    "grpo": ("audio_thinker.main_grpo", "direct", "accuracy"),
    "grpo_cot": ("audio_thinker.main_grpo", "think", "accuracy"),
    "grpo_atar": ("audio_thinker.main_grpo", "adaptive", "atar"),
    "grpo_atar_cr": ("audio_thinker.main_grpo", "adaptive", "atar_cr"),
    "grpo_atar_cr_tr": ("audio_thinker.main_grpo", "adaptive", "atar_cr_tr"),
}
JUDGE_MODES = ("atar_cr", "atar_cr_tr")
GPUS_PER_NODE = 8
P = "audio_thinker/"


@functools.lru_cache(maxsize=None)
def _backbone_only(entry: str, backbone: str):
    """The entry point's config with the backbone alone (no experiment)."""
    return composing.compose(entry, [f"backbone={backbone}"])


# ---------------------------------------------------------------------------------------------
# 1. the groups and the table
# ---------------------------------------------------------------------------------------------


def test_every_row_and_backbone_has_a_recipe():
    expected = {f"{b}/{r}" for b in BACKBONES for r in ROWS}
    grpo = {n for n in expected if ROWS[n.split("/")[1]][0] == "audio_thinker.main_grpo"}
    missing_grpo = sorted(grpo - set(NAMES))
    assert not missing_grpo, f"missing GRPO recipes: {missing_grpo}"
    missing_sft = sorted(expected - grpo - set(NAMES))
    assert not missing_sft, f"missing SFT recipes: {missing_sft}"
    assert set(NAMES) == expected, f"unexpected recipes: {sorted(set(NAMES) - expected)}"


def test_rows_belong_to_their_entry_point_and_are_named_alike():
    by_row: dict[str, set[str]] = {}
    for name in NAMES:
        r = load_recipe(name)
        by_row.setdefault(r.row_id, set()).add(r.row)
        assert r.entry == ROWS[r.row_id][0], f"{name}: entry {r.entry}, expected {ROWS[r.row_id][0]}"
        assert r.overrides == (f"backbone={r.backbone}", f"experiment={r.row_id}")
    for row_id, labels in by_row.items():
        assert len(labels) == 1, f"{row_id} has different Table 1 row names: {sorted(labels)}"


def test_the_entry_points_config_folders_are_the_groups_folders():
    for entry, folder in recipes.ENTRIES.items():
        assert Path(composing.entry_module(entry).CONFIG_DIR) == folder, entry


def test_the_table_covers_exactly_the_recipes(monkeypatch):
    assert recipes.check_table() == []
    # a gap or a stray entry in the table is named, with the table and the key
    costs = dict(recipes.COSTS)
    costs.pop("qwen2_5_omni_7b/grpo_cot")
    costs["qwen2_audio_7b/grpo_typo"] = recipes.COSTS["qwen2_audio_7b/grpo"]
    monkeypatch.setattr(recipes, "COSTS", costs)
    monkeypatch.setattr(recipes, "PAPER", {**recipes.PAPER, "tiny_cpu": {"grpo_cott": (1.0, 2.0, 3.0)}})
    problems = recipes.check_table()
    assert "COSTS['qwen2_audio_7b/grpo_typo']: no such recipe" in problems
    assert "PAPER['tiny_cpu']['grpo_cott']: no such recipe" in problems
    assert "qwen2_5_omni_7b/grpo_cot: no expected cost in audio_thinker.recipes.COSTS" in problems
    with pytest.raises(RecipeError, match="qwen2_5_omni_7b/grpo_cot: no expected cost"):
        load_recipe("qwen2_5_omni_7b/grpo_cot")


def test_paper_figures_and_costs_are_well_formed():
    for name in NAMES:
        r = load_recipe(name)
        assert isinstance(r.cost.gpus, int) and r.cost.gpus >= 0 and r.cost.gpu_hours >= 0, name
        assert r.cost.basis.strip(), f"{name}: say how the cost was derived"
        values = list(r.paper.values())
        assert list(r.paper) == list(recipes.PAPER_KEYS)
        if r.backbone == "tiny_cpu":
            assert values == [None, None, None], f"{name}: a CPU toy run has no paper figures"
        else:
            assert all(isinstance(v, float) and 0 < v < 100 for v in values), f"{name}: {values}"
    # the method's row is the paper's best on MMAU for both backbones
    for backbone, rows in recipes.PAPER.items():
        best = max(rows, key=lambda row: rows[row][0])
        assert best == "grpo_atar_cr_tr", backbone


def _included(path: Path) -> list[Path]:
    """``path`` and the files of its group its defaults list includes (the shared parts)."""
    raw = OmegaConf.load(path)
    out = [path]
    for item in raw.get("defaults", []) or []:
        if isinstance(item, str) and item != "_self_":
            out += _included(path.parent / f"{item}.yaml")
    return out


def test_backbone_experiment_files_name_a_recipe_or_are_included_by_one():
    """A misspelt ``<backbone>_<row>.yaml`` would never be selected: silently ignored."""
    for entry, folder in recipes.ENTRIES.items():
        pairs = {f"{n.split('/')[0]}_{n.split('/')[1]}" for n in NAMES if load_recipe(n).entry == entry}
        files = sorted((folder / recipes.PAIR_GROUP).glob("*.yaml"))
        used = {p for f in files if f.stem in pairs for p in _included(f)}
        stray = [str(f.relative_to(REPO)) for f in files if f not in used]
        assert not stray, f"{stray}: name no <backbone>_<row> recipe and no such file includes them"


def _leaf_keys(node, prefix=""):
    for key in node.keys():
        path = f"{prefix}.{key}" if prefix else str(key)
        child = node._get_node(key)
        if OmegaConf.is_dict(child) and len(child) > 0:
            yield from _leaf_keys(child, path)
        else:
            yield path


@pytest.mark.parametrize("name", NAMES)
def test_experiment_files_set_only_keys_the_config_has(name):
    """Config files may add keys (only command-line overrides are checked): a typo would add one."""
    recipe = load_recipe(name)
    base = _backbone_only(recipe.entry, recipe.backbone)
    files = [p for f in recipe.files()[1:] for p in _included(f)]
    unknown = []
    for path in files:
        raw = OmegaConf.load(path)
        raw.pop("defaults", None)
        for key in _leaf_keys(raw):
            if key.split(".")[0] == "toy" and "toy" not in base:
                continue  # the demo's build paths, before the base config had its toy: section
            if OmegaConf.select(base, key, default="<absent>") == "<absent>":
                unknown.append(f"{path.relative_to(REPO)}: {key}")
    assert not unknown, f"keys the config does not have (misspelt?): {unknown}"


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(RecipeError, match=r"no recipe 'tiny_cpu/nope'.*known recipes: .*tiny_cpu/grpo"):
        load_recipe("tiny_cpu/nope")
    with pytest.raises(RecipeError, match="no recipe 'laptop/grpo'"):
        load_recipe("laptop/grpo")


def test_parse_override_forms():
    assert parse_override("a.b=1") == ("", "a.b", "1")
    assert parse_override("+a.b=[x,y]") == ("+", "a.b", "[x,y]")
    assert parse_override("~a.b") == ("~", "a.b", None)
    assert parse_override("hydra.run.dir=/tmp/x=y") == ("", "hydra.run.dir", "/tmp/x=y")
    for bad in ("a.b", "+a.b", "=1", "a b=1", "a.b==1"):
        with pytest.raises(ValueError):
            parse_override(bad)


def test_command_puts_extra_overrides_last():
    r = load_recipe("tiny_cpu/grpo")
    cmd = command(r, ["trainer.total_training_steps=1", "audio_thinker.reward.mode=atar"])
    assert cmd[:3] == [sys.executable, "-m", "audio_thinker.main_grpo"]
    assert cmd[3:-2] == list(r.overrides) == ["backbone=tiny_cpu", "experiment=grpo"]
    assert cmd[-2:] == ["trainer.total_training_steps=1", "audio_thinker.reward.mode=atar"]
    with pytest.raises(RecipeError, match="extra override"):
        command(r, ["oops"])
    assert command(r, ["a=1", "--cfg", "job"])[-3:] == ["a=1", "--cfg", "job"]  # hydra's flags pass through
    with pytest.raises(recipes.ConfigError, match="compose takes hydra overrides only"):
        recipes.compose(r, ["--cfg", "job"])


def test_extra_overrides_win_in_the_composed_config():
    extra = ["audio_thinker.reward.mode=atar", "data.train_batch_size=2"]
    cfg = recipes.compose(load_recipe("tiny_cpu/grpo"), extra)
    assert cfg.audio_thinker.reward.mode == "atar" and cfg.data.train_batch_size == 2


def test_the_entry_point_takes_backbone_and_experiment_directly(tmp_path):
    """``python -m audio_thinker.main_grpo backbone=... experiment=...`` is the recipe: same config,
    run names resolved from the hydra run (``${hydra:runtime.choices.backbone}``)."""
    run = [sys.executable, "-m", "audio_thinker.main_grpo", f"hydra.run.dir={tmp_path}",
           "backbone=qwen2_5_omni_7b", "experiment=grpo_atar_cr_tr", "audio_thinker.dry_run=true"]
    done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "config OK (dry run" in done.stdout
    assert "experiment_name: qwen2_5_omni_7b-grpo_atar_cr_tr" in done.stdout
    assert "default_local_dir: checkpoints/recipes/qwen2_5_omni_7b/grpo_atar_cr_tr" in done.stdout
    assert "n_gpus_per_node: 4" in done.stdout and "mode: atar_cr_tr" in done.stdout


# ---------------------------------------------------------------------------------------------
# 2. every recipe composes and validates
# ---------------------------------------------------------------------------------------------


def _value(cfg, key):
    return OmegaConf.select(cfg, key, throw_on_missing=False)


@pytest.mark.parametrize("name", NAMES)
def test_recipe_composes_validates_and_matches_its_row(name):
    recipe = load_recipe(name)
    cfg = recipes.compose(recipe)  # hydra raises on a missing group option or a bad value
    recipes.validate(recipe, cfg)  # the entry point's own checks (+ verl's for GRPO)
    assert cfg.trainer.experiment_name == f"{recipe.backbone}-{recipe.row_id}"
    assert cfg.trainer.default_local_dir == f"checkpoints/recipes/{name}", "one run folder per recipe"

    entry, prompt_mode, reward_mode = ROWS[recipe.row_id]
    if entry == "audio_thinker.main_grpo":
        assert cfg.audio_thinker.prompt_mode == prompt_mode, name
        assert cfg.audio_thinker.reward.mode == reward_mode, name
        assert cfg.algorithm.adv_estimator == "grpo"

    training_gpus = int(_value(cfg, "trainer.n_gpus_per_node") or 0)
    nodes = int(_value(cfg, "trainer.nnodes") or 1)
    if recipe.backbone == "tiny_cpu":
        assert _value(cfg, "trainer.device") == "cpu", name
        assert recipe.cost.gpus == 0 and recipe.cost.gpu_hours == 0, f"{name}: a CPU recipe costs no GPU"
        return

    assert _value(cfg, "trainer.device") == "cuda", name
    assert recipe.cost.gpus > 0 and recipe.cost.gpu_hours > 0, name
    judge_gpus = 0
    if entry == "audio_thinker.main_grpo":
        # the paper's hyper-parameters, after composition
        actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
        assert actor.optim.lr == pytest.approx(1e-6), name
        assert rollout.n == 8 and cfg.data.train_batch_size == 16, name
        assert actor.use_kl_loss and actor.kl_loss_coef == pytest.approx(0.04), name
        assert rollout.temperature == pytest.approx(1.0), name
        assert cfg.trainer.total_training_steps == 1000, name
        assert "avqa" in str(cfg.data.train_files), f"{name}: trains on AVQA"
        judge = cfg.audio_thinker.judge
        if reward_mode in JUDGE_MODES:
            assert judge.backend == "vllm" and judge.gpus_per_worker >= 1 and judge.num_workers >= 1, name
            assert judge.node_resource is None, f"{name}: judges share the training node"
            judge_gpus = judge.num_workers * judge.gpus_per_worker
            # every prompt x rollout of a step splits evenly over the training GPUs (no padding rows)
            assert (cfg.data.train_batch_size * rollout.n) % (training_gpus * nodes) == 0, name
    total = training_gpus + judge_gpus
    assert total <= GPUS_PER_NODE, f"{name}: {training_gpus} + {judge_gpus} GPUs per node"
    assert (training_gpus + judge_gpus) * nodes == recipe.cost.gpus, (
        f"{name}: cost.gpus={recipe.cost.gpus} but the recipe uses {training_gpus} training + {judge_gpus} "
        f"judge GPUs per node x {nodes} node(s)"
    )


def test_tiny_rows_with_a_fixed_prompt_mode_build_their_own_demo_assets():
    """grpo / grpo_cot on tiny_cpu: the synthetic set and warm-start of their prompt mode, never
    the adaptive ones ``make demo`` uses; the other rows keep the demo's."""
    demo = _backbone_only("audio_thinker.main_grpo", "tiny_cpu")
    for row, mode in (("grpo", "direct"), ("grpo_cot", "think")):
        cfg = recipes.compose(load_recipe(f"tiny_cpu/{row}"))
        assert cfg.toy.synthetic_data == f"data/synthetic_{mode}"
        assert cfg.toy.warmstart_model == f"models/tiny_qwen2_audio_primed_{mode}"
        assert cfg.actor_rollout_ref.model.path == cfg.toy.warmstart_model
        assert cfg.data.train_files == f"data/synthetic_{mode}/train.parquet"
        assert cfg.toy.tiny_judge is None, "no judge in this row"
    atar = recipes.compose(load_recipe("tiny_cpu/grpo_atar_cr_tr"))
    assert atar.actor_rollout_ref.model.path == demo.actor_rollout_ref.model.path
    assert atar.data.train_files == demo.data.train_files


def test_verl_refuses_a_split_that_does_not_divide_the_batch():
    """Why the judge rows use 4+4 and not 6+2: 16 prompts x 8 responses do not split over 6 GPUs."""
    recipe = load_recipe("qwen2_audio_7b/grpo_atar_cr_tr")
    cfg = recipes.compose(recipe, ["trainer.n_gpus_per_node=6"])
    with pytest.raises(recipes.ConfigError, match="must be divisible by minimal possible batch size"):
        recipes.validate(recipe, cfg)


# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------


def _cli(capsys, *args):
    """``python -m audio_thinker.recipes ARGS`` in-process (the one-step runs below use the real command)."""
    code = recipes.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_list_show_compose(capsys):
    code, out, _ = _cli(capsys, "list")
    assert code == 0
    for name in NAMES:
        assert name in out
    assert "68.00  52.00  66.8" in out  # the paper's figures of qwen2_audio_7b/grpo_atar_cr_tr
    code, out, _ = _cli(capsys, "show", "qwen2_audio_7b/grpo_atar_cr_tr")
    assert code == 0
    assert "-m audio_thinker.main_grpo backbone=qwen2_audio_7b experiment=grpo_atar_cr_tr" in out
    assert "audio_thinker.reward.mode=atar_cr_tr" in out and "trainer.n_gpus_per_node=4" in out
    assert "conf/backbone_experiment/qwen2_audio_7b_grpo_atar_cr_tr.yaml" in out
    assert "mmau_test_mini_avg=68.00" in out and "101 GPU-hours" in out
    code, out, _ = _cli(capsys, "compose", "tiny_cpu/grpo_cot", "data.train_batch_size=8")
    assert code == 0
    assert "prompt_mode: think" in out and "train_batch_size: 8" in out
    assert out.rstrip().endswith(
        "config OK: tiny_cpu/grpo_cot (audio_thinker.main_grpo); nothing was started"
    )
    code, _, err = _cli(capsys, "compose", "tiny_cpu/grpo", "trainer.totl_training_steps=1")
    assert code == 2 and "trainer.totl_training_steps" in err
    code, _, err = _cli(capsys, "compose", "tiny_cpu/grpo", "data.train_batch_size=2")
    assert code == 2 and "verl refuses this config" in err
    code, _, err = _cli(capsys, "show", "tiny_cpu/nope")
    assert code == 2 and "known recipes:" in err


# ---------------------------------------------------------------------------------------------
# docs/recipes.md cannot drift
# ---------------------------------------------------------------------------------------------


def _doc_rows() -> dict[str, str]:
    text = (REPO / "docs" / "recipes.md").read_text()
    rows = {}
    for line in text.splitlines():
        found = re.search(r"python -m audio_thinker\.recipes run ([\w./]+)", line)
        if line.startswith("|") and found:
            rows[found.group(1)] = line
    return rows


def test_doc_table_lists_every_recipe_with_its_cost_and_the_papers_figures():
    rows = _doc_rows()
    missing = sorted(set(NAMES) - set(rows))
    assert not missing, f"docs/recipes.md has no table row for: {missing}"
    extra = sorted(set(rows) - set(NAMES))
    assert not extra, f"docs/recipes.md lists recipes that do not exist: {extra}"
    for name, line in rows.items():
        r = load_recipe(name)
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert r.row in cells and f"`{r.backbone}`" in cells, f"doc row of {name}: {cells}"
        hours = f"{r.cost.gpu_hours:g}"
        assert hours in cells, f"doc row of {name} does not show its {hours} GPU-hours"
        for key, value in r.paper.items():
            if value is not None:
                assert recipes.format_figure(key, value) in cells, f"doc row of {name} misses paper.{key}"


# ---------------------------------------------------------------------------------------------
# 3. one training step of every tiny_cpu GRPO recipe, through the real command
# ---------------------------------------------------------------------------------------------

GRPO_ROWS = [r for r, (entry, _, _) in ROWS.items() if entry == "audio_thinker.main_grpo"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny policy, a tiny judge and a small synthetic set, built once (not the repo's folders)."""
    from audio_thinker.data.synthetic import generate_dataset
    from audio_thinker.toy.tiny import ensure_tiny_model

    root = tmp_path_factory.mktemp("recipes")
    model = ensure_tiny_model("qwen2_audio", root / "model")
    data = root / "data"
    generate_dataset(data, n_train=8, n_val=4, seed=0, progress=False)
    return {"root": root, "model": model, "data": data, "judge": None}


def _judge(assets) -> Path:
    if assets["judge"] is None:
        from audio_thinker.toy.tiny_judge import ensure_tiny_judge

        assets["judge"] = ensure_tiny_judge(assets["root"] / "judge")
    return assets["judge"]


def _one_step_command(assets, row: str) -> tuple[list[str], Path]:
    run_dir = assets["root"] / row
    extra = [
        f"hydra.run.dir={run_dir}/hydra",
        f"actor_rollout_ref.model.path={assets['model']}",
        f"data.train_files={assets['data']}/train.parquet",
        f"data.val_files={assets['data']}/val.parquet",
        "toy.synthetic_data=null",
        "toy.tiny_model=null",
        "toy.warmstart_model=null",
        "toy.tiny_judge=null",
        "data.train_batch_size=4",
        "data.max_response_length=16",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "trainer.total_training_steps=1",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        f"trainer.default_local_dir={run_dir}",
        f"trainer.rollout_data_dir={run_dir}/dumps",
    ]
    if ROWS[row][2] in JUDGE_MODES:
        extra.append(f"audio_thinker.judge.model_path={_judge(assets)}")
    return [sys.executable, "-m", "audio_thinker.recipes", "run", f"tiny_cpu/{row}", *extra], run_dir


#: one-step runs at once (each is mostly Ray start-up and waiting, so two overlap well on 2 cores)
PARALLEL = 2


@pytest.fixture(scope="module")
def one_step_runs(request, assets):
    """Launch the one-step run of every selected row (PARALLEL at a time); {row: (result, run_dir, log)}."""
    import time

    rows = [
        item.callspec.params["row"] for item in request.session.items
        if item.originalname == "test_tiny_recipe_runs_one_training_step" and hasattr(item, "callspec")
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("VERL_FILE_LOGGER_PATH", "TENSORBOARD_DIR")}
    pending, running, done = list(dict.fromkeys(rows)), {}, {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            row = pending.pop(0)
            cmd, run_dir = _one_step_command(assets, row)
            log = assets["root"] / f"{row}.log"
            handle = open(log, "w")  # noqa: SIM115 - closed when the run ends
            proc = subprocess.Popen(cmd, cwd=assets["root"], env=env, stdout=handle, stderr=subprocess.PIPE,
                                    text=True)
            running[row] = (proc, run_dir, log, handle, time.monotonic())
        for row, (proc, run_dir, log, handle, started) in list(running.items()):
            if proc.poll() is None and time.monotonic() - started < 900:
                continue
            if proc.poll() is None:
                proc.kill()
            stderr = proc.communicate()[1]
            handle.close()
            done[row] = (proc.returncode, log.read_text(), stderr, run_dir, log)
            del running[row]
        time.sleep(0.5)
    return done


def _step_metrics(run_dir: Path) -> dict[int, dict]:
    history: dict[int, dict] = {}
    for path in sorted((run_dir / "metrics").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                history.setdefault(record["step"], {}).update(record["data"])
    return history


def _run_params():
    for row in GRPO_ROWS:
        marks = [pytest.mark.recipes, pytest.mark.slow]
        yield pytest.param(row, marks=marks, id=row)


#: pool metrics the trainer logs only when the judge pool serves the step
POOL_METRICS = ("judge/requests", "judge/workers_alive", "judge/think_responses", "judge/wait_s")


@pytest.mark.parametrize("row", list(_run_params()))
def test_tiny_recipe_runs_one_training_step(one_step_runs, row):
    from audio_thinker.prompts import INSTRUCTIONS, PromptMode

    code, stdout, stderr, run_dir, log = one_step_runs[row]
    assert code == 0, f"tiny_cpu/{row} failed (rc={code}); log: {log}\n{stderr[-3000:]}"
    _, prompt_mode, reward_mode = ROWS[row]
    assert f"recipe tiny_cpu/{row}:" in stderr  # the runner announced the command it ran
    assert "training steps logged: 1..1" in stdout
    history = _step_metrics(run_dir)
    assert 1 in history, f"step 1 not logged; steps: {sorted(history)}"
    step = history[1]
    for key in ("reward/overall", "reward/accuracy_term", "reward/format", "accuracy", "think_rate",
                "format_failure_rate"):
        assert isinstance(step.get(P + key), float), key
    if reward_mode in JUDGE_MODES:
        assert step[P + "judge/workers_alive"] == 1.0
        kinds = 2 if reward_mode == "atar_cr_tr" else 1  # consistency (+ think quality) per THINK response
        assert step[P + "judge/requests"] == kinds * step[P + "judge/think_responses"]
    else:
        pool = [k for k in POOL_METRICS if P + k in step]
        assert not pool, f"judge pool metrics in a row without the judge: {pool}"
        assert step[P + "judge/consistency_judged"] == 0 and step[P + "judge/quality_judged"] == 0
    # the row's prompt reached the policy: the rollout dump's inputs carry the mode's instruction
    rows = [json.loads(line) for line in (run_dir / "dumps" / "1.jsonl").read_text().splitlines() if line]
    instruction = INSTRUCTIONS[PromptMode(prompt_mode)]
    assert rows and all(instruction in r["input"] for r in rows), f"prompt of mode {prompt_mode} not used"
    others = [text for mode, text in INSTRUCTIONS.items() if mode.value != prompt_mode]
    assert not any(text in r["input"] for text in others for r in rows), "another mode's instruction"
