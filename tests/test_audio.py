"""labkit.audio (chapter 09b): the STFT equals torch.stft, the mel filters are HTK's triangles, mu-law
decoding inverts build.py's encoding, noise has the asked SNR, and bad input gets a clear error."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit import audio

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("shape", "n_fft", "hop"), [((6000,), 256, 128), ((3, 1000), 64, 16), ((2, 2, 513), 512, 200)])
def test_stft_equals_torch_stft(shape, n_fft, hop):
    signal = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = audio.stft(signal, n_fft, hop)
    flat = signal.reshape(-1, shape[-1])
    theirs = torch.stft(flat, n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64), center=True,
                        pad_mode="reflect", return_complex=True).reshape(ours.shape)
    assert ours.shape == (*shape[:-1], n_fft // 2 + 1, 1 + shape[-1] // hop)
    assert torch.allclose(ours, theirs, atol=1e-10)


def test_a_pure_tone_lands_in_its_frequency_bin():
    rate, n_fft = 8000, 256
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(4000) / rate)        # 1 kHz = bin 1000 / (8000 / 256) = 32
    power = audio.power_spectrogram(tone, n_fft, 128)
    assert int(power[:, 5:-5].mean(dim=1).argmax()) == 32


def test_mel_filters_are_triangles_peaking_at_mel_spaced_centres():
    filters = audio.mel_filterbank(n_mels=10, n_fft=512, sample_rate=8000)   # (257, 10)
    assert filters.shape == (257, 10)
    assert filters.min() >= 0 and filters.max() <= 1
    bins_hz = torch.linspace(0, 4000, 257)
    centres = audio.mel_to_hz(torch.linspace(0, float(audio.hz_to_mel(4000.0)), 12))[1:-1]
    for k in range(10):                                                     # the peak sits at the nearest bin
        assert abs(bins_hz[filters[:, k].argmax()] - centres[k]) <= 4000 / 256 + 1e-6   # one bin: triangles lean
    # each filter is zero outside its neighbours' centres
    edges = audio.mel_to_hz(torch.linspace(0, float(audio.hz_to_mel(4000.0)), 12))
    for k in range(10):
        outside = (bins_hz.double() <= edges[k]) | (bins_hz.double() >= edges[k + 2])
        assert filters[outside, k].abs().max() == 0


def test_mel_scale_round_trips_and_matches_htk():
    assert abs(float(audio.hz_to_mel(1000.0)) - 2595 * math.log10(1 + 1000 / 700)) < 1e-9
    hz = torch.tensor([0.0, 100.0, 1000.0, 3999.0], dtype=torch.float64)
    assert torch.allclose(audio.mel_to_hz(audio.hz_to_mel(hz)), hz)


def test_log_mel_shape_for_a_clip():
    assert audio.log_mel_spectrogram(torch.zeros(2, 6000)).shape == (2, 40, 47)


def _build_module():
    spec = importlib.util.spec_from_file_location("datasets_build", REPO / "datasets" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mu_law_decode_inverts_build_encoding():
    build = _build_module()
    x = np.linspace(-1, 1, 20001)
    codes = build.mu_law_encode(x)
    back = audio.mu_law_decode(torch.from_numpy(codes)).double().numpy()
    levels = audio.mu_law_decode(torch.arange(256, dtype=torch.uint8)).double().numpy()   # increasing
    assert np.all(np.diff(levels) > 0)
    # every value comes back as one of the two levels around it (fine steps near 0, coarse near ±1)
    right = np.clip(np.searchsorted(levels, x), 1, 255)
    gap = levels[right] - levels[right - 1]
    assert np.all(np.abs(back - x) <= gap + 1e-7)
    assert np.abs(back - x)[np.abs(x) < 0.01].max() < 1e-3 < np.abs(back - x)[np.abs(x) > 0.9].max()
    assert audio.mu_law_decode(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


def test_add_noise_has_the_asked_snr():
    signal = torch.sin(torch.linspace(0, 200, 8000)).repeat(4, 1)
    noisy = audio.add_noise(signal, 10.0, torch.Generator().manual_seed(0))
    snr = 10 * torch.log10(signal.pow(2).mean(1) / (noisy - signal).pow(2).mean(1))
    assert torch.allclose(snr, torch.full((4,), 10.0), atol=0.3)
    assert torch.equal(audio.add_noise(signal, math.inf), signal)


def test_speech_cnn_shapes_and_errors():
    model = audio.SpeechCNN()
    assert model(torch.zeros(3, 1, 40, 47)).shape == (3, 10)
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.zeros(3, 40, 47))


def test_bad_input_is_named():
    with pytest.raises(TypeError, match="float tensor"):
        audio.stft(torch.zeros(100, dtype=torch.int64), 16, 8)
    with pytest.raises(ValueError, match="too few"):
        audio.stft(torch.zeros(10), 64, 16)
    with pytest.raises(ValueError, match="window must have shape"):
        audio.stft(torch.zeros(100), 16, 8, window=torch.ones(8))
    with pytest.raises(ValueError, match="f_max"):
        audio.mel_filterbank(40, 256, 8000, f_max=5000)
    with pytest.raises(TypeError, match="uint8"):
        audio.mu_law_decode(torch.zeros(3))
