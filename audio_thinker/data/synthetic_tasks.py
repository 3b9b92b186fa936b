"""Pure-numpy synthesis of the synthetic audio QA tasks (no I/O; see :mod:`.synthetic` for that).

Every task is a multiple-choice question whose answer is fixed by the waveform alone: tones,
beeps and melodies are generated for a requested label, so a small signal-processing oracle
(FFT peak, RMS envelope, onset count) recovers it. Tasks come at three difficulty levels so
that think-rate-by-difficulty can be studied:

=================  ==========  =============================================================
task               difficulty  audio
=================  ==========  =============================================================
pitch_high_low     easy        one tone, 150-350 Hz (low) or 1.2-2.4 kHz (high)
count_beeps_clean  easy        1-3 identical clean beeps, long gaps
compare_two_tones  medium      two tones 2-6 semitones apart; which one is higher
louder_half        medium      one steady tone whose level steps 6-10 dB at the midpoint
count_beeps        medium      2-5 short beeps of random pitch and level, short gaps
count_beeps_noisy  hard        2-5 short beeps of one pitch in white noise at -2..4 dB SNR
melody_contour     hard        3-5 notes, steps of 2-5 semitones: ascending, descending or
                               neither; noise at 10-18 dB SNR
longest_tone       hard        three tones, one 1.35-1.7x longer than the others; noise at
                               12-20 dB SNR
=================  ==========  =============================================================

Every synthesizer has the signature ``synthesize_<task>(rng, *, label=None, sample_rate)`` and
returns ``(samples, label)``: mono float32 in ``[-0.9, 0.9]`` (headroom, never clipped), with
8 ms raised-cosine fades on every note and small random level/frequency jitter. ``label=None``
draws the label from ``rng``.

**Balance and determinism.** :func:`plan_example` decides the text side of example ``index`` of
a split without touching audio: the task is ``index mod n_tasks``; within a task the question
template goes round-robin; within a (task, template) the labels come in blocks that are random
permutations of the label set, so each template's answers are balanced to within one; the
answer's position among the shown choices comes in the same kind of blocks per task, and the
other choices are shuffled. All randomness derives from the seed: the block permutations from
``default_rng([seed, split_id, stream, task_id, template_id, block])``, the order of the other
choices from ``default_rng([seed, split_id, index, 103])`` and the audio from
``default_rng([seed, split_id, index])`` (:func:`synthesize_example`). Because labels and
answer positions come from independent random blocks that differ per seed and split, neither
the question text nor the choice order predicts the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
#: Split name -> the ``split_id`` mixed into every seed (train and val never share a stream).
SPLITS: dict[str, int] = {"train": 0, "val": 1}
DIFFICULTIES = ("easy", "medium", "hard")
#: Peak level of every clip is at most this (headroom for PCM16 and for the resampler).
PEAK_LIMIT = 0.9
FADE_S = 0.008
_LABEL_STREAM, _POSITION_STREAM, _CHOICE_STREAM = 101, 102, 103

Synthesizer = Callable[..., tuple[np.ndarray, str]]


# --------------------------------------------------------------------------- signal helpers


def _resolve_label(rng: np.random.Generator, label: str | None, choices: Sequence[str]) -> str:
    """``label`` checked against ``choices``, or a random choice when ``None``."""
    if label is None:
        return str(choices[int(rng.integers(len(choices)))])
    if label not in choices:
        raise ValueError(f"label {label!r} is not one of {list(choices)!r}")
    return label


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A frequency drawn uniformly on a log scale (musically uniform)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _level(rng: np.random.Generator, *, low_db: float = -14.0, high_db: float = -9.0) -> float:
    """A random peak amplitude between ``low_db`` and ``high_db`` dBFS."""
    return float(10.0 ** (rng.uniform(low_db, high_db) / 20.0))


def _jitter(rng: np.random.Generator, value: float, *, rel: float) -> float:
    """``value`` times a random factor in ``[1 - rel, 1 + rel]``."""
    return float(value * (1.0 + rng.uniform(-rel, rel)))


def _note(
    rng: np.random.Generator,
    *,
    freq: float,
    duration: float,
    amplitude: float,
    sample_rate: int,
    harmonics: Sequence[float] = (1.0,),
) -> np.ndarray:
    """A harmonic tone (relative harmonic amplitudes ``harmonics``) with raised-cosine fades."""
    n = round(duration * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    for k, rel in enumerate(harmonics, start=1):
        if rel and k * freq < sample_rate / 2:
            out += rel * np.sin(2 * np.pi * k * freq * t + rng.uniform(0, 2 * np.pi))
    return _fade(out * amplitude / sum(harmonics), sample_rate=sample_rate)


def _fade(x: np.ndarray, *, sample_rate: int, fade_s: float = FADE_S) -> np.ndarray:
    """Apply raised-cosine fade-in and fade-out of ``fade_s`` seconds (avoids clicks)."""
    n = min(round(fade_s * sample_rate), len(x) // 2)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
        x = x.copy()
        x[:n] *= ramp
        x[len(x) - n :] *= ramp[::-1]
    return x


def _sequence(
    rng: np.random.Generator,
    notes: Sequence[np.ndarray],
    gaps: Sequence[float],
    *,
    clip_s: float,
    sample_rate: int,
    margin_s: float = 0.05,
) -> np.ndarray:
    """Notes separated by silent ``gaps`` (seconds), placed at a random offset in the clip."""
    if len(gaps) != max(len(notes) - 1, 0):
        raise ValueError("need exactly one gap between consecutive notes")
    parts: list[np.ndarray] = []
    for i, note in enumerate(notes):
        parts.append(note)
        if i < len(gaps):
            parts.append(np.zeros(round(gaps[i] * sample_rate)))
    body = np.concatenate(parts)
    total, margin = round(clip_s * sample_rate), round(margin_s * sample_rate)
    slack = total - 2 * margin - len(body)
    if slack < 0:
        raise ValueError(f"{len(body) / sample_rate:.2f} s of notes do not fit in {clip_s} s")
    start = margin + int(rng.integers(slack + 1))
    out = np.zeros(total)
    out[start : start + len(body)] = body
    return out


def _add_noise(rng: np.random.Generator, x: np.ndarray, *, snr_db: float) -> np.ndarray:
    """Add white noise at ``snr_db``: signal power measured over the non-silent samples."""
    active = x != 0
    signal_power = float(np.mean(x[active] ** 2)) if active.any() else 0.0
    noise_rms = np.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
    return x + rng.normal(0.0, noise_rms, size=len(x))


def _finish(x: np.ndarray) -> np.ndarray:
    """Scale down (never up) to keep the peak under :data:`PEAK_LIMIT`; return float32."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > PEAK_LIMIT:
        x = x * (PEAK_LIMIT / peak)
    return x.astype(np.float32)


def _beeps(
    rng: np.random.Generator,
    *,
    count: int,
    freqs: Sequence[float],
    duration: tuple[float, float],
    gap: tuple[float, float],
    level_jitter_db: float,
    sample_rate: int,
) -> tuple[list[np.ndarray], list[float]]:
    """``count`` sine beeps (one frequency each) with random durations, gaps and levels."""
    base = _level(rng)
    notes = [
        _note(
            rng,
            freq=_jitter(rng, freqs[i], rel=0.01),
            duration=rng.uniform(*duration),
            amplitude=base * 10.0 ** (rng.uniform(-level_jitter_db, level_jitter_db) / 20.0),
            sample_rate=sample_rate,
        )
        for i in range(count)
    ]
    return notes, [float(rng.uniform(*gap)) for _ in range(count - 1)]


# --------------------------------------------------------------------------- synthesizers

PITCH_CHOICES = ("high", "low")
FIRST_SECOND = ("the first tone", "the second tone")
HALVES = ("the first half", "the second half")
COUNT_1_3 = ("1", "2", "3")
COUNT_2_5 = ("2", "3", "4", "5")
CONTOURS = ("ascending", "descending", "neither")
FIRST_TO_THIRD = ("the first tone", "the second tone", "the third tone")


def synthesize_pitch_high_low(
    rng: np.random.Generator, *, label: str | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """Easy: one 0.5-0.8 s sine in a 1 s clip; ``low`` 150-350 Hz, ``high`` 1.2-2.4 kHz."""
    label = _resolve_label(rng, label, PITCH_CHOICES)
    low, high = (1200.0, 2400.0) if label == "high" else (150.0, 350.0)
    note = _note(
        rng,
        freq=_log_uniform(rng, low, high),
        duration=rng.uniform(0.5, 0.8),
        amplitude=_level(rng),
        sample_rate=sample_rate,
    )
    return _finish(_sequence(rng, [note], [], clip_s=1.0, sample_rate=sample_rate)), label


def synthesize_count_beeps_clean(
    rng: np.random.Generator, *, label: str | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """Easy: 1-3 identical 0.12-0.22 s beeps (700-1300 Hz), 0.2-0.35 s gaps, 2 s clip."""
    label = _resolve_label(rng, label, COUNT_1_3)
    count, freq = int(label), _log_uniform(rng, 700.0, 1300.0)
    notes, gaps = _beeps(
        rng,
        count=count,
        freqs=[freq] * count,
        duration=(0.12, 0.22),
        gap=(0.2, 0.35),
        level_jitter_db=1.0,
        sample_rate=sample_rate,
    )
    return _finish(_sequence(rng, notes, gaps, clip_s=2.0, sample_rate=sample_rate)), label


def synthesize_compare_two_tones(
    rng: np.random.Generator, *, label: str | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """Medium: two 0.35-0.55 s tones, 2-6 semitones apart, 0.15-0.3 s gap, 2 s clip.

    The levels of the two tones are drawn independently, so loudness says nothing about pitch.
    """
    label = _resolve_label(rng, label, FIRST_SECOND)
    first = _log_uniform(rng, 250.0, 1000.0)
    step = 2.0 ** (rng.uniform(2.0, 6.0) / 12.0)
    second = first / step if label == FIRST_SECOND[0] else first * step
    notes = [
        _note(
            rng,
            freq=f,
            duration=rng.uniform(0.35, 0.55),
            amplitude=_level(rng),
            sample_rate=sample_rate,
            harmonics=(1.0, 0.3),
        )
        for f in (first, second)
    ]
    gaps = [float(rng.uniform(0.15, 0.3))]
    return _finish(_sequence(rng, notes, gaps, clip_s=2.0, sample_rate=sample_rate)), label


def synthesize_louder_half(
    rng: np.random.Generator, *, label: str | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """Medium: a steady 250-900 Hz harmonic tone over 0.05-1.95 s of a 2 s clip whose level
    steps by 6-10 dB at 1 s (40 ms cross-fade); the labelled half is the louder one."""
    label = _resolve_label(rng, label, HALVES)
    clip_s, edge_s, ramp_s = 2.0, 0.05, 0.04
    tone = _note(
        rng,
        freq=_log_uniform(rng, 250.0, 900.0),
        duration=clip_s - 2 * edge_s,
        amplitude=_level(rng, low_db=-10.0, high_db=-6.0),
        sample_rate=sample_rate,
        harmonics=(1.0, 0.4, 0.2),
    )
    quiet = 10.0 ** (-rng.uniform(6.0, 10.0) / 20.0)
    loud_first = label == HALVES[0]
    t = (np.arange(len(tone)) / sample_rate) + edge_s
    ramp = np.clip((t - (clip_s / 2 - ramp_s / 2)) / ramp_s, 0.0, 1.0)  # 0 -> 1 around 1 s
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    gain = (1.0 - ramp) + ramp * quiet if loud_first else (1.0 - ramp) * quiet + ramp
    out = np.zeros(round(clip_s * sample_rate))
    start = round(edge_s * sample_rate)
    out[start : start + len(tone)] = tone * gain
    return _finish(out), label


def synthesize_count_beeps(
    rng: np.random.Generator, *, label: str | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """Medium: 2-5 short beeps (0.06-0.14 s) of random pitch (500-1600 Hz) and level
    (+-3 dB), 0.07-0.18 s gaps, 2 s clip."""
    label = _resolve_label(rng, label, COUNT_2_5)
    count = int(label)
    notes, gaps = _beeps(
        rng,
        count=count,
        freqs=[_log_uniform(rng, 500.0, 1600.0) for _ in range(count)],
        duration=(0.06, 0.14),
        gap=(0.07, 0.18),
        level_jitter_db=3.0,
        sample_rate=sample_rate,
    )
    return _finish(_sequence(rng, notes, gaps, clip_s=2.0, sample_rate=sample_rate)), label


def synthesize_count_beeps_noisy(
    rng: np.random.Generator, *, label: str | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """Hard: 2-5 beeps (0.07-0.14 s, one 600-1400 Hz pitch +-1 %, +-2 dB), 0.09-0.2 s gaps,
    in white noise at -2..4 dB SNR (beep power vs noise power), 2.5 s clip."""
    label = _resolve_label(rng, label, COUNT_2_5)
    count, freq = int(label), _log_uniform(rng, 600.0, 1400.0)
    notes, gaps = _beeps(
        rng,
        count=count,
        freqs=[freq] * count,
        duration=(0.07, 0.14),
        gap=(0.09, 0.2),
        level_jitter_db=2.0,
        sample_rate=sample_rate,
    )
    clean = _sequence(rng, notes, gaps, clip_s=2.5, sample_rate=sample_rate)
    return _finish(_add_noise(rng, clean, snr_db=rng.uniform(-2.0, 4.0))), label


def _contour_steps(rng: np.random.Generator, *, label: str, n_notes: int) -> np.ndarray:
    """Semitone steps (magnitude 2-5) between ``n_notes`` notes that realise ``label``."""
    sizes = rng.integers(2, 6, size=n_notes - 1)
    if label == "ascending":
        return sizes
    if label == "descending":
        return -sizes
    while True:  # neither: at least one step up and one step down
        signs = rng.choice(np.array([-1, 1]), size=n_notes - 1)
        if (signs > 0).any() and (signs < 0).any():
            return signs * sizes


def synthesize_melody_contour(
    rng: np.random.Generator, *, label: str | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """Hard: 3-5 harmonic notes (0.18-0.28 s, 0.04-0.07 s gaps) on the semitone grid between
    MIDI 55 and 84 (196-1047 Hz), every step 2-5 semitones; ``ascending``/``descending`` move
    one way, ``neither`` goes both ways. White noise at 10-18 dB SNR, 2 s clip."""
    label = _resolve_label(rng, label, CONTOURS)
    n_notes = int(rng.integers(3, 6))
    offsets = np.concatenate([[0], np.cumsum(_contour_steps(rng, label=label, n_notes=n_notes))])
    start = int(rng.integers(55 - offsets.min(), 84 - offsets.max() + 1))
    base = _level(rng)
    notes = [
        _note(
            rng,
            freq=440.0 * 2.0 ** ((start + off - 69) / 12.0),
            duration=rng.uniform(0.18, 0.28),
            amplitude=base * 10.0 ** (rng.uniform(-2.0, 2.0) / 20.0),
            sample_rate=sample_rate,
            harmonics=(1.0, 0.35, 0.15),
        )
        for off in offsets
    ]
    gaps = [float(rng.uniform(0.04, 0.07)) for _ in range(n_notes - 1)]
    clean = _sequence(rng, notes, gaps, clip_s=2.0, sample_rate=sample_rate)
    return _finish(_add_noise(rng, clean, snr_db=rng.uniform(10.0, 18.0))), label


def synthesize_longest_tone(
    rng: np.random.Generator, *, label: str | None = None, sample_rate: int = SAMPLE_RATE
) -> tuple[np.ndarray, str]:
    """Hard: three 300-1200 Hz tones, two of 0.25-0.5 s and the labelled one 1.35-1.7x the
    longer of those; 0.12-0.25 s gaps; white noise at 12-20 dB SNR; 3 s clip."""
    label = _resolve_label(rng, label, FIRST_TO_THIRD)
    durations = rng.uniform(0.25, 0.5, size=3)
    target = FIRST_TO_THIRD.index(label)
    others = [d for i, d in enumerate(durations) if i != target]
    durations[target] = max(others) * rng.uniform(1.35, 1.7)
    notes = [
        _note(
            rng,
            freq=_log_uniform(rng, 300.0, 1200.0),
            duration=float(d),
            amplitude=_level(rng),
            sample_rate=sample_rate,
            harmonics=(1.0, 0.3),
        )
        for d in durations
    ]
    gaps = [float(rng.uniform(0.12, 0.25)) for _ in range(2)]
    clean = _sequence(rng, notes, gaps, clip_s=3.0, sample_rate=sample_rate)
    return _finish(_add_noise(rng, clean, snr_db=rng.uniform(12.0, 20.0))), label


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class TaskSpec:
    """One synthetic task: its difficulty, question phrasings and canonical choice set."""

    name: str
    difficulty: str
    phrasings: tuple[str, ...]
    choices: tuple[str, ...]
    clip_s: float
    synthesize: Synthesizer

    @property
    def summary(self) -> str:
        """First paragraph of the synthesizer's docstring (what the audio is), on one line."""
        return " ".join((self.synthesize.__doc__ or "").strip().split("\n\n")[0].split())


_COUNT_PHRASINGS = (
    "How many beeps are there in the audio?",
    "Count the beeps. How many do you hear?",
    "How many times does the beep sound in this clip?",
)

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "pitch_high_low",
            "easy",
            (
                "Is the pitch of this tone high or low?",
                "Does the tone sound high-pitched or low-pitched?",
                "Listen to the tone. Is it high or low?",
            ),
            PITCH_CHOICES,
            1.0,
            synthesize_pitch_high_low,
        ),
        TaskSpec("count_beeps_clean", "easy", _COUNT_PHRASINGS, COUNT_1_3, 2.0, synthesize_count_beeps_clean),
        TaskSpec(
            "compare_two_tones",
            "medium",
            (
                "Two tones are played one after the other. Which one is higher in pitch?",
                "Which of the two tones has the higher pitch?",
                "You will hear two tones. Which tone is higher?",
            ),
            FIRST_SECOND,
            2.0,
            synthesize_compare_two_tones,
        ),
        TaskSpec(
            "louder_half",
            "medium",
            (
                "Which half of the clip is louder?",
                "Is the sound louder in the first half or in the second half?",
                "The volume of this tone changes once. In which half is it louder?",
            ),
            HALVES,
            2.0,
            synthesize_louder_half,
        ),
        TaskSpec("count_beeps", "medium", _COUNT_PHRASINGS, COUNT_2_5, 2.0, synthesize_count_beeps),
        TaskSpec(
            "count_beeps_noisy",
            "hard",
            (
                "Beeps are hidden in background noise. How many beeps are there?",
                "Ignoring the hiss, how many beeps do you hear?",
                "Count the beeps in this noisy recording.",
            ),
            COUNT_2_5,
            2.5,
            synthesize_count_beeps_noisy,
        ),
        TaskSpec(
            "melody_contour",
            "hard",
            (
                "Is this melody ascending, descending, or neither?",
                "Do the notes of this melody keep going up, keep going down, or neither?",
                "Describe the pitch direction of the note sequence.",
            ),
            CONTOURS,
            2.0,
            synthesize_melody_contour,
        ),
        TaskSpec(
            "longest_tone",
            "hard",
            (
                "Three tones are played. Which one lasts the longest?",
                "Which of the three tones has the longest duration?",
                "Listen to the three tones. Which tone is held the longest?",
            ),
            FIRST_TO_THIRD,
            3.0,
            synthesize_longest_tone,
        ),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def describe_tasks() -> list[dict[str, object]]:
    """The registry as plain data (for the manifest and the docs)."""
    return [
        {
            "task": s.name,
            "difficulty": s.difficulty,
            "phrasings": list(s.phrasings),
            "choices": list(s.choices),
            "clip_s": s.clip_s,
            "audio": s.summary,
        }
        for s in TASKS.values()
    ]


# --------------------------------------------------------------------------- balanced plans


@dataclass(frozen=True)
class ExamplePlan:
    """The text side of one example: which task, phrasing, shown choices and answer."""

    split: str
    index: int
    task: str
    difficulty: str
    template_id: int
    question: str
    choices: tuple[str, ...]
    answer: str

    @property
    def answer_index(self) -> int:
        """Position of the answer among the shown choices."""
        return self.choices.index(self.answer)


def split_id(split: str) -> int:
    """The integer mixed into every seed of ``split`` (see :data:`SPLITS`)."""
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}: use one of {sorted(SPLITS)}") from None


def _block_draw(key: Sequence[int], *, slot: int, size: int) -> int:
    """Element ``slot`` of an endless sequence of random permutations of ``range(size)``.

    Block ``slot // size`` is ``default_rng([*key, block]).permutation(size)``, so every
    ``size`` consecutive draws contain each value exactly once.
    """
    block, within = divmod(slot, size)
    return int(np.random.default_rng([*key, block]).permutation(size)[within])


def plan_example(*, seed: int, split: str, index: int) -> ExamplePlan:
    """Decide task, question, label and choice order of example ``index`` (no audio)."""
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    sid = split_id(split)
    task_id = index % len(TASK_NAMES)
    spec = TASKS[TASK_NAMES[task_id]]
    within_task = index // len(TASK_NAMES)
    template_id = within_task % len(spec.phrasings)
    within_template = within_task // len(spec.phrasings)
    n = len(spec.choices)
    label = spec.choices[
        _block_draw([seed, sid, _LABEL_STREAM, task_id, template_id], slot=within_template, size=n)
    ]
    position = _block_draw([seed, sid, _POSITION_STREAM, task_id, 0], slot=within_task, size=n)
    others = [c for c in spec.choices if c != label]
    np.random.default_rng([seed, sid, index, _CHOICE_STREAM]).shuffle(others)
    shown = tuple(others[:position] + [label] + others[position:])
    return ExamplePlan(
        split=split,
        index=index,
        task=spec.name,
        difficulty=spec.difficulty,
        template_id=template_id,
        question=spec.phrasings[template_id],
        choices=shown,
        answer=label,
    )


def synthesize_example(plan: ExamplePlan, *, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The audio of ``plan``: its task's synthesizer with ``default_rng([seed, split_id, index])``."""
    rng = np.random.default_rng([seed, split_id(plan.split), plan.index])
    samples, _ = TASKS[plan.task].synthesize(rng, label=plan.answer, sample_rate=sample_rate)
    return samples
