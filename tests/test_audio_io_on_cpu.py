"""Audio I/O: every validation error, formats, mono/resampling, video containers, SNR estimate."""

from __future__ import annotations

import doctest
import shutil
import subprocess
import threading

import numpy as np
import pytest
import soundfile as sf

import audio_thinker.data.audio as audio_mod
from audio_thinker.data.audio import (
    AudioConfig,
    AudioCorruptError,
    AudioEmptyError,
    AudioError,
    AudioMissingError,
    AudioNonFiniteError,
    AudioNoStreamError,
    AudioSilentError,
    AudioStats,
    AudioTooLongError,
    AudioTruncatedWarning,
    FFmpegNotFoundError,
    estimate_snr_db,
    load_audio,
    write_wav,
)

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(
    FFMPEG is None,
    reason="ffmpeg is not installed (apt-get install -y ffmpeg); video/fallback decoding untested",
)


def tone(freq: float, *, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    """Frequency of the largest Hann-windowed FFT peak, zero-padded for ~0.25 Hz bins."""
    n_fft = 1 << int(np.ceil(np.log2(max(4 * len(x), sr * 4))))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft))
    return float(np.fft.rfftfreq(n_fft, 1 / sr)[int(np.argmax(spectrum))])


def ffmpeg(*args: str) -> None:
    cmd = [str(FFMPEG), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def test_doctests_of_audio_module():
    result = doctest.testmod(audio_mod)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    stats = AudioStats()
    with pytest.raises(AudioMissingError) as info:
        load_audio(tmp_path / "nope.wav", stats=stats)
    err = info.value
    assert isinstance(err, AudioError)
    assert err.reason == "missing" and err.path.endswith("nope.wav")
    assert "nope.wav" in str(err) and "missing" in str(err)
    assert stats.as_dict() == {"ok": 0, "truncated": 0, "errors": {"missing": 1}}
    with pytest.raises(AudioMissingError):
        load_audio(tmp_path)  # a folder is not a clip


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3"])
def test_corrupt_bytes(tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioCorruptError) as info:
        load_audio(path)
    assert info.value.reason == "corrupt" and info.value.path == str(path)


def test_corrupt_without_ffmpeg_says_how_to_fix(tmp_path, monkeypatch):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"RIFF\x00\x00garbage" * 10)
    monkeypatch.setattr(audio_mod.shutil, "which", lambda name: None)
    with pytest.raises(AudioCorruptError, match="apt-get install"):
        load_audio(path)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x" * 100)
    with pytest.raises(FFmpegNotFoundError, match="apt-get install"):
        load_audio(video)


def test_empty_files(tmp_path):
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.touch()
    no_frames = tmp_path / "noframes.wav"
    sf.write(no_frames, np.zeros(0, dtype=np.float32), 16000)
    for path in (zero_bytes, no_frames):
        with pytest.raises(AudioEmptyError) as info:
            load_audio(path)
        assert info.value.reason == "empty"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = tone(440, sr=16000, seconds=0.5)
    x[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioNonFiniteError, match="1 NaN/inf") as info:
        load_audio(path)
    assert info.value.reason == "non_finite"


def test_silence(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(AudioSilentError) as info:
        load_audio(path)
    assert info.value.reason == "silent"
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, tone(440, sr=16000, seconds=0.5, amp=1e-3), 16000, subtype="FLOAT")
    assert load_audio(quiet).duration_s == pytest.approx(0.5)  # quiet is not silent
    with pytest.raises(AudioSilentError):
        load_audio(quiet, config=AudioConfig(silence_rms_threshold=1e-2))


def test_too_long_is_truncated_at_30s_with_a_counted_warning(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(440, sr=16000, seconds=31.0), 16000)
    stats = AudioStats()
    with pytest.warns(AudioTruncatedWarning, match="31.00 s truncated"):
        loaded = load_audio(path, stats=stats)
    assert loaded.truncated and len(loaded.samples) == 30 * 16000
    assert loaded.original_duration_s == pytest.approx(31.0)
    assert stats.as_dict() == {"ok": 1, "truncated": 1, "errors": {}}
    assert "1 truncated" in stats.summary()


def test_too_long_with_resampling_and_reject(tmp_path):
    path = tmp_path / "long44.wav"
    sf.write(path, tone(440, sr=44100, seconds=1.5), 44100)
    config = AudioConfig(max_seconds=1.0)
    with pytest.warns(AudioTruncatedWarning):
        loaded = load_audio(path, config=config)
    assert len(loaded.samples) == 16000 and loaded.truncated
    stats = AudioStats()
    with pytest.raises(AudioTooLongError, match="on_too_long='reject'") as info:
        load_audio(path, config=AudioConfig(max_seconds=1.0, on_too_long="reject"), stats=stats)
    assert info.value.reason == "too_long"
    assert stats.as_dict()["errors"] == {"too_long": 1}
    assert not load_audio(path, config=AudioConfig(max_seconds=None)).truncated


def test_config_validation():
    with pytest.raises(ValueError, match="on_too_long"):
        AudioConfig(on_too_long="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_seconds"):
        AudioConfig(max_seconds=0)
    with pytest.raises(ValueError, match="sample_rate"):
        AudioConfig(sample_rate=0)


# ---------------------------------------------------------------------- formats, mono, rates


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype"),
    [
        (".wav", "WAV", "PCM_16"),
        (".flac", "FLAC", "PCM_16"),
        (".ogg", "OGG", "VORBIS"),
        (".mp3", "MP3", None),
    ],
)
def test_formats_decode_to_16k_mono(tmp_path, suffix, fmt, subtype):
    path = tmp_path / f"clip{suffix}"
    try:
        sf.write(path, tone(440, sr=44100, seconds=1.0), 44100, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, TypeError, ValueError):
        if FFMPEG is None:
            pytest.skip(f"soundfile cannot write {fmt} and ffmpeg is not installed")
        wav = tmp_path / "src.wav"
        sf.write(wav, tone(440, sr=44100, seconds=1.0), 44100)
        ffmpeg("-i", str(wav), str(path))
    loaded = load_audio(path)
    assert loaded.sample_rate == 16000 and loaded.samples.dtype == np.float32 and loaded.samples.ndim == 1
    assert loaded.original_sample_rate == 44100
    assert loaded.duration_s == pytest.approx(1.0, abs=0.08)  # mp3/ogg codecs pad a little
    assert peak_hz(loaded.samples, 16000) == pytest.approx(440, abs=2)


def test_stereo_is_mixed_to_mono(tmp_path):
    left = tone(440, sr=16000, seconds=1.0, amp=0.4)
    stereo = np.stack([left, 0.5 * left], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16000, subtype="FLOAT")
    loaded = load_audio(path)
    assert loaded.original_channels == 2 and loaded.samples.ndim == 1
    np.testing.assert_allclose(loaded.samples, 0.75 * left, atol=1e-6)


@pytest.mark.parametrize(("sr", "freq"), [(44100, 3000.0), (8000, 1000.0), (48000, 440.0), (16000, 440.0)])
def test_resampling_preserves_the_tone(tmp_path, sr, freq):
    path = tmp_path / f"tone{sr}.wav"
    sf.write(path, tone(freq, sr=sr, seconds=1.0), sr, subtype="FLOAT")
    loaded = load_audio(path)
    assert loaded.sample_rate == 16000 and len(loaded.samples) == 16000
    assert peak_hz(loaded.samples, 16000) == pytest.approx(freq, abs=1.0)
    rms = float(np.sqrt(np.mean(loaded.samples[800:-800] ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.02)  # amplitude survives resampling


@needs_ffmpeg
@pytest.mark.parametrize("container", ["mp4", "mkv", "webm"])
def test_video_container_audio_track(tmp_path, container):
    path = tmp_path / f"-video.{container}"  # a leading dash must not be read as an ffmpeg option
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=660:duration=1.2:sample_rate=44100",
        "-f", "lavfi", "-i", "color=c=blue:s=32x32:d=1.2:r=5",
        "-ac", "2", "-shortest", str(path),
    )  # fmt: skip
    loaded = load_audio(path)
    assert loaded.sample_rate == 16000 and loaded.original_channels == 2
    assert loaded.duration_s == pytest.approx(1.2, abs=0.1)
    assert peak_hz(loaded.samples, 16000) == pytest.approx(660, abs=2)


@needs_ffmpeg
def test_video_without_audio_and_corrupt_video(tmp_path):
    silent_video = tmp_path / "noaudio.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.5:r=5", str(silent_video))
    with pytest.raises(AudioNoStreamError) as info:
        load_audio(silent_video)
    assert info.value.reason == "no_audio_stream"
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00garbage" * 50)
    with pytest.raises(AudioCorruptError, match="ffmpeg could not decode"):
        load_audio(broken)


@needs_ffmpeg
def test_ffmpeg_fallback_for_formats_soundfile_cannot_read(tmp_path):
    wav = tmp_path / "src.wav"
    sf.write(wav, tone(440, sr=22050, seconds=1.0), 22050)
    m4a = tmp_path / "clip.m4a"
    ffmpeg("-i", str(wav), "-c:a", "aac", str(m4a))
    loaded = load_audio(m4a)
    assert loaded.original_sample_rate == 22050
    assert peak_hz(loaded.samples, 16000) == pytest.approx(440, abs=2)


# ------------------------------------------------------------------------ writing, stats


def test_write_wav_roundtrip_and_atomicity(tmp_path):
    x = tone(440, sr=16000, seconds=0.25)
    out = write_wav(tmp_path / "sub" / "a.wav", x, 16000)
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["a.wav"]
    back, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and np.max(np.abs(back - x)) < 1e-4
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "sub" / "b.wav", np.array([0.0, np.nan]), 16000)
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.wav"]


def test_stats_are_thread_safe():
    stats = AudioStats()

    def work() -> None:
        for i in range(500):
            stats.record_ok(truncated=i % 5 == 0)
            stats.record_error("corrupt" if i % 2 else AudioSilentError("x", "quiet"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.as_dict() == {"ok": 2000, "truncated": 400, "errors": {"corrupt": 1000, "silent": 1000}}
    other = AudioStats()
    other.merge(stats)
    assert other.as_dict() == stats.as_dict()
    assert other.summary() == "audio: 2000 ok (400 truncated), 2000 rejected (corrupt 1000, silent 1000)"


# ----------------------------------------------------------------------------------- SNR


def _noisy(snr_db: float, *, gated: bool, seed: int = 0) -> np.ndarray:
    sr = 16000
    x = tone(440, sr=sr, seconds=3.0).astype(np.float64)
    if gated:  # 250 ms on / 250 ms off bursts
        x = x * (np.floor(np.arange(len(x)) / sr * 4) % 2 == 0)
    noise_power = 0.125 / 10 ** (snr_db / 10)  # tone power (while on) over noise power
    return x + np.random.default_rng(seed).normal(0, np.sqrt(noise_power), len(x))


@pytest.mark.parametrize("gated", [False, True])
def test_snr_estimate_is_monotone_and_roughly_right(gated):
    levels = [0.0, 5.0, 10.0, 20.0, 30.0]
    estimates = [estimate_snr_db(_noisy(level, gated=gated), 16000) for level in levels]
    assert estimates == sorted(estimates)
    for level, estimate in zip(levels, estimates, strict=True):
        assert estimate == pytest.approx(level, abs=3.0), (level, estimates)


def test_snr_edge_cases():
    rng = np.random.default_rng(1)
    assert estimate_snr_db(rng.normal(0, 0.3, 32000), 16000) < 0  # noise only
    assert estimate_snr_db(tone(440, sr=16000, seconds=1.0) + 0.3, 16000) > 60  # DC offset ignored
    assert estimate_snr_db(np.zeros(1000), 16000) == float("-inf")
    x = _noisy(15.0, gated=True)
    assert estimate_snr_db(x, 16000) == estimate_snr_db(x.copy(), 16000)  # deterministic
    assert np.isfinite(estimate_snr_db(x[:50], 16000))  # shorter than a frame
    with pytest.raises(ValueError):
        estimate_snr_db(np.zeros(0), 16000)


# ------------------------------------------------------- hardening: range, OS errors, capped decode


def test_huge_finite_samples_are_rejected_as_out_of_range(tmp_path):
    x = tone(440, sr=16000, seconds=0.5)
    x[200] = 3e29  # finite, but no audio: a garbage buffer written as float wav
    spike = tmp_path / "spike.wav"
    sf.write(spike, x, 16000, subtype="FLOAT")
    huge = tmp_path / "huge.wav"
    sf.write(huge, np.full(8000, 1e18, dtype=np.float32), 16000, subtype="FLOAT")
    stats = AudioStats()
    for path in (spike, huge):
        with pytest.raises(AudioError, match="max_abs_sample=16") as info:
            load_audio(path, stats=stats)
        assert info.value.reason == "out_of_range" and info.value.path.endswith(path.name)
    assert stats.as_dict()["errors"] == {"out_of_range": 2}
    hot = tmp_path / "hot.wav"  # a float wav a little over full scale is still audio
    sf.write(hot, tone(440, sr=16000, seconds=0.5, amp=2.0), 16000, subtype="FLOAT")
    assert np.max(np.abs(load_audio(hot).samples)) > 1.5
    with pytest.raises(AudioError) as info:
        load_audio(hot, config=AudioConfig(max_abs_sample=1.5))
    assert info.value.reason == "out_of_range"
    with pytest.raises(ValueError, match="max_abs_sample"):
        AudioConfig(max_abs_sample=0)


def _unopenable_paths(tmp_path):
    loop_a, loop_b, self_loop = tmp_path / "loop_a.wav", tmp_path / "loop_b.wav", tmp_path / "self.wav"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    self_loop.symlink_to(self_loop)
    too_long = tmp_path / ("x" * 300 + ".wav")
    return {"symlink loop": loop_a, "self loop": self_loop, "name too long": too_long}


def test_os_level_failures_to_open_are_typed_unreadable_errors(tmp_path):
    stats = AudioStats()
    paths = _unopenable_paths(tmp_path)
    for what, path in paths.items():
        with pytest.raises(AudioError) as info:
            load_audio(path, stats=stats)
        assert info.value.reason == "unreadable", what
        assert "unreadable" in str(info.value) and path.name[:20] in str(info.value)
    folder = tmp_path / "folder.wav"  # a directory: no clip at that name
    folder.mkdir()
    with pytest.raises(AudioMissingError, match="is a directory"):
        load_audio(folder, stats=stats)
    assert stats.as_dict()["errors"] == {"unreadable": len(paths), "missing": 1}


def test_permission_denied_is_unreadable(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    path = tmp_path / "locked.wav"
    sf.write(path, tone(440, sr=16000, seconds=0.5), 16000)
    path.chmod(0)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.reason == "unreadable"


def _write_long(path, *, sr: int, seconds: float, voiced_s: float) -> None:
    """``voiced_s`` of tone, then silence up to ``seconds``, written block by block."""
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as out:
        out.write(tone(440, sr=sr, seconds=voiced_s))
        block = np.zeros(sr * 10, dtype=np.float32)
        left = int(round((seconds - voiced_s) * sr))
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)


def _decode_then_cut(path, config: AudioConfig) -> np.ndarray:
    """The reference: decode the whole file, then cut at the native rate and resample."""
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = data[: int(round(config.max_seconds * sr)), 0]
    out = audio_mod.resample(mono, orig_sr=sr, target_sr=config.sample_rate)
    return out[: int(round(config.max_seconds * config.sample_rate))]


def test_decoding_stops_at_the_length_cap(tmp_path):
    import time
    import tracemalloc

    path = tmp_path / "ten_minutes.wav"
    _write_long(path, sr=16000, seconds=600.0, voiced_s=40.0)
    config = AudioConfig(max_seconds=30.0)
    stats = AudioStats()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.warns(AudioTruncatedWarning, match="600.00 s truncated"):
            loaded = load_audio(path, config=config, stats=stats)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    # the whole file decodes to 600 s x 16000 x 4 bytes = 38 MB; 30 s is 1.9 MB
    assert peak < 12e6, f"decoding allocated {peak / 1e6:.1f} MB: the whole file was read"
    assert elapsed < 10.0
    assert loaded.truncated and len(loaded.samples) == 30 * 16000
    assert loaded.original_duration_s == pytest.approx(600.0)
    assert stats.as_dict() == {"ok": 1, "truncated": 1, "errors": {}}
    assert np.array_equal(loaded.samples, _decode_then_cut(path, config))
    tracemalloc.start()
    try:
        with pytest.raises(AudioError) as info:
            load_audio(path, config=AudioConfig(max_seconds=30.0, on_too_long="reject"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "too_long" and "600.00 s" in str(info.value)
    assert peak < 12e6


@pytest.mark.parametrize("sr", [44100, 22050])
def test_capped_decode_equals_decode_then_cut_with_resampling(tmp_path, sr):
    path = tmp_path / f"long{sr}.flac"
    _write_long(path, sr=sr, seconds=13.0, voiced_s=11.0)
    config = AudioConfig(max_seconds=10.0)
    with pytest.warns(AudioTruncatedWarning):
        loaded = load_audio(path, config=config)
    assert loaded.truncated and loaded.original_duration_s == pytest.approx(13.0)
    assert np.array_equal(loaded.samples, _decode_then_cut(path, config))
    short = AudioConfig(max_seconds=20.0)  # under the cap: read whole, not truncated
    assert not load_audio(path, config=short).truncated


@needs_ffmpeg
def test_ffmpeg_decode_stops_at_the_cap_and_equals_decode_then_cut(tmp_path):
    wav = tmp_path / "src.wav"
    _write_long(wav, sr=22050, seconds=25.0, voiced_s=25.0)
    video = tmp_path / "clip.mkv"  # a video suffix: decoded by ffmpeg
    ffmpeg("-i", str(wav), "-c:a", "flac", str(video))
    config = AudioConfig(max_seconds=10.0)
    with pytest.warns(AudioTruncatedWarning):
        loaded = load_audio(video, config=config)
    assert loaded.truncated and len(loaded.samples) == 10 * 16000
    assert loaded.original_duration_s > 10.0
    assert np.array_equal(loaded.samples, _decode_then_cut(wav, config))
    with pytest.raises(AudioTooLongError):
        load_audio(video, config=AudioConfig(max_seconds=10.0, on_too_long="reject"))
