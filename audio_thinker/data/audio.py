"""Audio I/O: load any clip as 16 kHz mono float32, validate it, write wavs, estimate SNR.

:func:`load_audio` reads wav/flac/mp3/ogg (and anything else libsndfile decodes) with
``soundfile`` and the audio track of videos (mp4/mkv/webm/mov/avi/...) with the ``ffmpeg``
command-line tool, which is also the fallback decoder for files ``soundfile`` cannot read. The
samples are mixed down to mono, resampled with ``torchaudio.functional.resample`` and checked.

Every problem with a clip raises one :class:`AudioError` subclass carrying the ``path`` and a
short machine-readable ``reason`` (``missing``, ``unreadable``, ``corrupt``, ``no_audio_stream``,
``empty``, ``non_finite``, ``out_of_range``, ``silent``, ``too_long``), so that data pipelines count
and skip bad clips (:class:`AudioStats`) instead of crashing; every OS-level failure to open a
clip (symlink loop, permission denied, a name too long, ...) is ``unreadable`` (a directory is
``missing``: there is no clip at that name). A missing ``ffmpeg`` binary is an environment problem,
not a clip problem: it raises :class:`FFmpegNotFoundError` (a ``RuntimeError``).

Qwen2-Audio's feature extractor silently truncates input at 30 s; clips longer than
``AudioConfig.max_seconds`` are cut explicitly here (with an :class:`AudioTruncatedWarning`,
counted by :class:`AudioStats`) or rejected, per ``AudioConfig.on_too_long``. Decoding stops at
that cap: a 10-minute file costs what its first 30 s cost (soundfile reads only the frames needed,
ffmpeg gets ``-t``), with a result identical to decoding everything and cutting.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import soundfile as sf

#: Suffixes decoded with ffmpeg directly (containers whose audio track we extract).
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts"})
#: Suffixes libsndfile is tried on first (ffmpeg remains the fallback).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".au"})

_INSTALL_FFMPEG = (
    "install it (Debian/Ubuntu: apt-get install -y ffmpeg) or pass ffmpeg=<path> in AudioConfig "
    "(config key audio_thinker.audio.ffmpeg)"
)
#: values of ``AudioConfig.on_too_long``
ON_TOO_LONG = ("truncate", "reject")


class AudioError(Exception):
    """A clip that cannot be used; ``reason`` is a short machine-readable string."""

    reason: ClassVar[str] = "error"

    def __init__(self, path: str | os.PathLike[str], detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {self.reason}: {detail}")


class AudioMissingError(AudioError):
    """The file does not exist (or the name is a directory)."""

    reason = "missing"


class AudioUnreadableError(AudioError):
    """The OS refuses to open the file: symlink loop, permission denied, name too long, ..."""

    reason = "unreadable"


class AudioCorruptError(AudioError):
    """Neither soundfile nor ffmpeg could decode the file."""

    reason = "corrupt"


class AudioNoStreamError(AudioError):
    """A container (e.g. a video) without any audio track."""

    reason = "no_audio_stream"


class AudioEmptyError(AudioError):
    """Decoding succeeded but produced no samples."""

    reason = "empty"


class AudioNonFiniteError(AudioError):
    """The decoded samples contain NaN or +-inf."""

    reason = "non_finite"


class AudioOutOfRangeError(AudioError):
    """A decoded sample's magnitude exceeds ``AudioConfig.max_abs_sample`` (not audio)."""

    reason = "out_of_range"


class AudioSilentError(AudioError):
    """The clip's RMS level is below ``AudioConfig.silence_rms_threshold``."""

    reason = "silent"


class AudioTooLongError(AudioError):
    """Longer than ``AudioConfig.max_seconds`` with ``on_too_long='reject'``."""

    reason = "too_long"


class AudioTruncatedWarning(UserWarning):
    """A clip longer than ``AudioConfig.max_seconds`` was cut to that length."""


class FFmpegNotFoundError(RuntimeError):
    """The ``ffmpeg`` binary is needed (videos, fallback decoding) but not installed."""


@dataclass(frozen=True)
class AudioConfig:
    """How clips are loaded and validated; also the ``audio_thinker.audio`` config section (its
    schema and docs). Bad values raise ``ValueError`` naming the field."""

    #: sample rate every clip is resampled to (Qwen2-Audio / Omni feature extractors: 16 kHz)
    sample_rate: int = 16000
    #: the model's audio window; longer clips are cut or rejected (null: no length check)
    max_seconds: float | None = 30.0
    #: truncate (cut, counted warning) | reject (skip the sample, counted)
    on_too_long: str = "truncate"
    #: clips whose RMS is below this are rejected as silent (1e-4 = -80 dBFS; 0 disables)
    silence_rms_threshold: float = 1e-4
    #: clips with a sample beyond +-this are rejected (out_of_range). Decoded audio is nominally
    #: in [-1, 1] (integer PCM always is); float files may run hot, so 16 (+24 dBFS) leaves ample
    #: headroom while catching garbage buffers (values like 1e18 or 3e29 that are finite but no audio)
    max_abs_sample: float = 16.0
    #: the ffmpeg binary (videos, and files libsndfile cannot decode)
    ffmpeg: str = "ffmpeg"
    #: seconds one ffmpeg decode may take
    ffmpeg_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        for name in ("max_seconds", "silence_rms_threshold", "max_abs_sample", "ffmpeg_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise ValueError(f"{name}={value} must be a finite number"
                                 + (" (null: no length check)" if name == "max_seconds" else ""))
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate={self.sample_rate} must be positive")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds={self.max_seconds} must be positive, or null for no length check")
        if self.on_too_long not in ON_TOO_LONG:
            raise ValueError(
                f"on_too_long={self.on_too_long!r} is not valid; use one of: {', '.join(ON_TOO_LONG)}")
        if self.silence_rms_threshold < 0:
            raise ValueError(
                f"silence_rms_threshold={self.silence_rms_threshold} must be >= 0 (0 disables the check)")
        if not self.max_abs_sample > 0:
            raise ValueError(
                f"max_abs_sample={self.max_abs_sample} must be positive (16.0: float audio is nominally "
                "within [-1, 1])")
        if self.ffmpeg_timeout_s <= 0:
            raise ValueError(f"ffmpeg_timeout_s={self.ffmpeg_timeout_s} must be positive")


DEFAULT_AUDIO_CONFIG = AudioConfig()


@dataclass(frozen=True)
class LoadedAudio:
    """A validated clip: mono float32 ``samples`` at ``sample_rate``.

    ``original_duration_s`` is the length of the source before any truncation (from the file's
    header when decoding stopped at the cap; for ffmpeg-decoded clips over the cap, a lower bound);
    ``truncated`` tells whether ``samples`` were cut to ``AudioConfig.max_seconds``.
    """

    path: str
    samples: np.ndarray
    sample_rate: int
    original_duration_s: float
    original_sample_rate: int
    original_channels: int
    truncated: bool

    @property
    def duration_s(self) -> float:
        """Length of ``samples`` in seconds."""
        return len(self.samples) / self.sample_rate


class AudioStats:
    """Thread-safe counters of loaded clips, errors by reason and truncations.

    >>> stats = AudioStats()
    >>> stats.record_ok(); stats.record_error(AudioSilentError("a.wav", "rms 0"))
    >>> stats.as_dict()
    {'ok': 1, 'truncated': 0, 'errors': {'silent': 1}}
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ok = 0
        self._truncated = 0
        self._errors: Counter[str] = Counter()

    def record_ok(self, *, truncated: bool = False) -> None:
        """Count one usable clip (and whether it was truncated)."""
        with self._lock:
            self._ok += 1
            self._truncated += int(truncated)

    def record_error(self, error: AudioError | str) -> None:
        """Count one rejected clip by its reason (an :class:`AudioError` or a reason string)."""
        reason = error.reason if isinstance(error, AudioError) else str(error)
        with self._lock:
            self._errors[reason] += 1

    def merge(self, other: AudioStats) -> None:
        """Add ``other``'s counts to these (e.g. per-worker stats)."""
        data = other.as_dict()
        with self._lock:
            self._ok += data["ok"]
            self._truncated += data["truncated"]
            self._errors.update(data["errors"])

    def as_dict(self) -> dict[str, Any]:
        """``{"ok", "truncated", "errors": {reason: count}}`` (reasons sorted)."""
        with self._lock:
            return {
                "ok": self._ok,
                "truncated": self._truncated,
                "errors": dict(sorted(self._errors.items())),
            }

    def summary(self) -> str:
        """One human-readable line, e.g. ``audio: 10 ok (1 truncated), 2 rejected (corrupt 1, ...)``."""
        data = self.as_dict()
        rejected = sum(data["errors"].values())
        detail = ", ".join(f"{k} {v}" for k, v in data["errors"].items())
        text = f"audio: {data['ok']} ok ({data['truncated']} truncated), {rejected} rejected"
        return f"{text} ({detail})" if detail else text


def find_ffmpeg(config: AudioConfig = DEFAULT_AUDIO_CONFIG) -> str | None:
    """Path of the ffmpeg binary named by ``config.ffmpeg``, or None when it is not installed."""
    return shutil.which(config.ffmpeg)


def _require_ffmpeg(config: AudioConfig, *, why: str) -> str:
    """The ffmpeg binary, or :class:`FFmpegNotFoundError` explaining how to install it."""
    binary = find_ffmpeg(config)
    if binary is None:
        raise FFmpegNotFoundError(
            f"ffmpeg ({config.ffmpeg!r}) is not on PATH but is needed to {why}: {_INSTALL_FFMPEG}"
        )
    return binary


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


#: seconds ffmpeg decodes past ``max_seconds`` (to tell a clip at the cap from a longer one)
_FFMPEG_MARGIN_S = 1.0


class _Decoded(NamedTuple):
    """Samples ``(frames, channels)`` float32 at the native ``sample_rate``, at most the length cap.

    ``total_frames`` is the source's length; ``exact`` is False when only a lower bound is known
    (ffmpeg stopped at the cap plus a margin).
    """

    data: np.ndarray
    sample_rate: int
    total_frames: int
    exact: bool = True


def _cap_frames(config: AudioConfig, sr: int) -> int | None:
    """Frames at rate ``sr`` that ``config.max_seconds`` keeps (None: no cap)."""
    return None if config.max_seconds is None else int(round(config.max_seconds * sr))


def _decode_with_ffmpeg(path: Path, config: AudioConfig) -> _Decoded:
    """Decode the first audio stream of ``path`` with ffmpeg at its native rate and channels,
    stopping ``_FFMPEG_MARGIN_S`` after ``config.max_seconds`` (``-t``).

    ffmpeg writes a float WAV to a temporary file (seekable, so its header is exact) that
    soundfile then reads; the resampling itself is left to torchaudio.
    """
    binary = _require_ffmpeg(config, why=f"decode {path.name}")
    limit_s = None if config.max_seconds is None else config.max_seconds + _FFMPEG_MARGIN_S
    with tempfile.TemporaryDirectory(prefix="audio_thinker_ffmpeg_") as tmp:
        out = Path(tmp) / "decoded.wav"
        cmd = [
            binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-i", f"file:{path}", "-map", "0:a:0", "-vn", "-sn", "-dn",
            *(["-t", f"{limit_s:.6f}"] if limit_s is not None else []),
            "-c:a", "pcm_f32le", "-f", "wav", str(out),
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=config.ffmpeg_timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise AudioCorruptError(
                path, f"ffmpeg did not finish within {config.ffmpeg_timeout_s:g} s"
            ) from None
        stderr = proc.stderr or ""
        if proc.returncode != 0:
            if "matches no streams" in stderr or "does not contain any stream" in stderr:
                raise AudioNoStreamError(path, "the file has no audio track")
            raise AudioCorruptError(path, f"ffmpeg could not decode it: {_last_line(stderr)}")
        try:
            data, sr = sf.read(str(out), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioCorruptError(path, f"ffmpeg produced unreadable output: {err}") from None
    exact = limit_s is None or len(data) < int(sr * (limit_s - 0.01))
    return _Decoded(data, int(sr), len(data), exact)


def _read_soundfile(path: Path, config: AudioConfig) -> _Decoded:
    """Read ``path`` with soundfile, only up to the length cap (the header gives the full length)."""
    with sf.SoundFile(str(path)) as handle:
        sr, total = int(handle.samplerate), int(handle.frames)
        cap = _cap_frames(config, sr)
        wanted = total if cap is None or total <= 0 else min(total, cap)
        data = handle.read(frames=wanted if total > 0 else -1, dtype="float32", always_2d=True)
    if len(data) < wanted or total <= 0:  # the header promised more than the file holds
        total = len(data)
    return _Decoded(data, sr, total)


def _decode(path: Path, config: AudioConfig) -> _Decoded:
    """The samples of ``path`` up to the length cap, with its native rate and full length."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _decode_with_ffmpeg(path, config)
    try:
        return _read_soundfile(path, config)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        sf_error = str(err)
    if find_ffmpeg(config) is None:
        raise AudioCorruptError(
            path,
            f"soundfile cannot decode it ({sf_error}) and ffmpeg is not installed to try: {_INSTALL_FFMPEG}",
        )
    return _decode_with_ffmpeg(path, config)


def resample(samples: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a 1-D float32 signal with ``torchaudio.functional.resample`` (windowed sinc)."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import torch
    import torchaudio.functional as taf

    with torch.no_grad():
        out = taf.resample(
            torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), orig_sr, target_sr
        )
    result: np.ndarray = out.numpy().astype(np.float32, copy=False)
    return result


def _check_length(path: Path, mono: np.ndarray, decoded: _Decoded, config: AudioConfig) -> tuple[np.ndarray, bool]:
    """Cut ``mono`` (native rate) to ``max_seconds`` or reject it; returns (samples, truncated)."""
    duration = decoded.total_frames / decoded.sample_rate
    if config.max_seconds is None or duration <= config.max_seconds:
        return mono, False
    length = f"{duration:.2f} s" if decoded.exact else f"over {duration:.2f} s"
    if config.on_too_long == "reject":
        raise AudioTooLongError(
            path, f"{length} is longer than max_seconds={config.max_seconds:g} (on_too_long='reject')"
        )
    warnings.warn(
        AudioTruncatedWarning(f"{path}: {length} truncated to max_seconds={config.max_seconds:g}"),
        stacklevel=3,
    )
    return mono[: _cap_frames(config, decoded.sample_rate)], True


def load_audio(
    path: str | os.PathLike[str],
    *,
    config: AudioConfig = DEFAULT_AUDIO_CONFIG,
    stats: AudioStats | None = None,
) -> LoadedAudio:
    """Load ``path`` as validated mono float32 at ``config.sample_rate``.

    Raises one :class:`AudioError` subclass per problem (``missing``, ``unreadable``, ``corrupt``,
    ``no_audio_stream``, ``empty``, ``non_finite``, ``out_of_range``, ``too_long`` when rejecting,
    ``silent``); when ``stats`` is given, the outcome is counted there too.
    """
    try:
        loaded = _load_checked(_open_checked(path), config)
    except AudioError as err:
        if stats is not None:
            stats.record_error(err)
        raise
    if stats is not None:
        stats.record_ok(truncated=loaded.truncated)
    return loaded


def _open_checked(path: str | os.PathLike[str]) -> Path:
    """The resolved path of a readable regular file; the OS's refusals become :class:`AudioError`."""
    try:
        resolved = Path(path).expanduser().resolve()
        with open(resolved, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise AudioUnreadableError(resolved, "not a regular file")
    except FileNotFoundError:
        raise AudioMissingError(path, "no such file (check the path and the media folder)") from None
    except IsADirectoryError:  # no clip at this name (AudioMissingError, as before)
        raise AudioMissingError(path, "is a directory, not an audio file") from None
    except (OSError, RuntimeError) as err:  # RuntimeError: pathlib's symlink loop before Python 3.13
        if isinstance(err, OSError) and err.errno == errno.ENOTDIR:
            raise AudioMissingError(path, "no such file (a parent is not a folder)") from None
        raise AudioUnreadableError(path, f"cannot open it: {err}") from None
    return resolved


def _load_checked(path: Path, config: AudioConfig) -> LoadedAudio:
    """The body of :func:`load_audio` without the counting."""
    if path.stat().st_size == 0:
        raise AudioEmptyError(path, "the file is 0 bytes")
    decoded = _decode(path, config)
    data, src_sr = decoded.data, decoded.sample_rate
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioEmptyError(path, "decoded to 0 samples")
    if not np.isfinite(data).all():
        bad = int(data.size - np.isfinite(data).sum())
        raise AudioNonFiniteError(path, f"{bad} NaN/inf samples")
    peak = float(np.max(np.abs(data)))
    if peak > config.max_abs_sample:
        raise AudioOutOfRangeError(
            path, f"peak |sample| {peak:.3g} is beyond max_abs_sample={config.max_abs_sample:g} "
            "(float audio is nominally within [-1, 1]; this is not audio)"
        )
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    mono, truncated = _check_length(path, mono, decoded, config)
    samples = resample(mono, orig_sr=src_sr, target_sr=config.sample_rate)
    if config.max_seconds is not None:
        samples = samples[: _cap_frames(config, config.sample_rate)]
    if len(samples) == 0:
        raise AudioEmptyError(path, "fewer than one sample after resampling")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms < config.silence_rms_threshold:
        raise AudioSilentError(
            path, f"RMS {rms:.2e} is below silence_rms_threshold={config.silence_rms_threshold:g}"
        )
    return LoadedAudio(
        path=str(path),
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=config.sample_rate,
        original_duration_s=decoded.total_frames / src_sr,
        original_sample_rate=src_sr,
        original_channels=int(data.shape[1]),
        truncated=truncated,
    )


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sr: int, *, subtype: str = "PCM_16") -> Path:
    """Atomically write ``samples`` (1-D mono or ``(frames, channels)``) as a WAV file.

    The data goes to a hidden temporary name in the same folder that is renamed over ``path``
    only once complete, so a crash never leaves a half-written ``path``. Values outside [-1, 1]
    are clipped by the PCM conversion. Returns the resolved path.
    """
    target = Path(path).expanduser().resolve()
    array = np.asarray(samples)
    if array.ndim not in (1, 2):
        raise ValueError(f"samples must be 1-D or (frames, channels), got shape {array.shape}")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if not np.isfinite(array).all():
        raise ValueError(f"samples for {target} contain NaN/inf; clean them before writing")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        sf.write(tmp_name, array, sr, format="WAV", subtype=subtype)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _frame_powers(x: np.ndarray, frame: int) -> np.ndarray:
    """Mean power of consecutive non-overlapping frames of ``frame`` samples (>= 1 frame)."""
    if len(x) < frame:
        return np.array([np.mean(x * x)])
    n = len(x) // frame
    powers: np.ndarray = np.mean(np.square(x[: n * frame].reshape(n, frame)), axis=1)
    return powers


def _temporal_snr_power(x: np.ndarray, sr: int, frame_ms: float, percentile: float) -> tuple[float, float]:
    """(signal, noise) power from frame energies: loudest vs quietest ``percentile`` % frames."""
    powers = np.sort(_frame_powers(x, max(1, int(sr * frame_ms / 1000))))
    k = max(1, int(math.ceil(len(powers) * percentile / 100)))
    noise = float(np.mean(powers[:k]))
    loud = float(np.mean(powers[-k:]))
    return max(loud - noise, 0.0), noise


def _spectral_snr_power(x: np.ndarray, nfft: int = 512) -> tuple[float, float]:
    """(signal, noise) power from the long-term spectrum: noise = median bin level x bins."""
    if len(x) < nfft:
        x = np.pad(x, (0, nfft - len(x)))
    hop = nfft // 2
    n = 1 + (len(x) - nfft) // hop
    idx = np.arange(nfft)[None, :] + hop * np.arange(n)[:, None]
    window = np.hanning(nfft)
    psd = np.mean(np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2, axis=0)[1:]  # drop DC
    noise = float(np.median(psd)) * len(psd)
    return max(float(np.sum(psd)) - noise, 0.0), noise


def estimate_snr_db(
    samples: np.ndarray, sr: int, *, frame_ms: float = 20.0, percentile: float = 10.0
) -> float:
    """A simple, deterministic blind SNR estimate in dB (pure numpy), for data filtering.

    Method: the larger of two classic estimates on the DC-removed mono signal:

    * temporal (frame energy): split into ``frame_ms`` frames; the mean power of the quietest
      ``percentile`` % frames is the noise, the loudest ``percentile`` % minus the noise is the
      signal. Right for intermittent sources (speech, events, bursts) over stationary noise.
    * spectral: the Hann-windowed 512-point long-term power spectrum; the median bin level
      times the number of bins is the noise, the remainder the signal. Right for stationary
      tonal/harmonic sources (hum, sustained notes) over broadband noise.

    Limits: a blind estimate, not a measurement. A stationary *broadband* source (engine, rain,
    applause) reads as noise (low SNR); strongly coloured noise (brown/pink) or band-limited
    audio (e.g. 8 kHz sources upsampled) can read as signal (high SNR); clips shorter than a few
    frames are unreliable. Pure white noise gives about -5 dB or less. The result is clamped to
    [-100, 100] dB; an all-zero clip returns ``-inf``.

    >>> t = np.arange(16000) / 16000
    >>> clean = 0.5 * np.sin(2 * np.pi * 440 * t)
    >>> estimate_snr_db(clean, 16000) > 40
    True
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"samples must be a non-empty 1-D or (frames, channels) array, got shape {x.shape}")
    if sr <= 0 or not 0 < percentile <= 50:
        raise ValueError(f"need sr > 0 and 0 < percentile <= 50, got sr={sr}, percentile={percentile}")
    x = x - x.mean()
    total = float(np.mean(x * x))
    if total == 0.0:
        return float("-inf")
    best = -100.0
    for signal, noise in (_temporal_snr_power(x, sr, frame_ms, percentile), _spectral_snr_power(x)):
        floor = 1e-10 * max(signal + noise, 1e-300)
        best = max(best, 10.0 * math.log10(max(signal, floor) / max(noise, floor)))
    return float(min(max(best, -100.0), 100.0))
