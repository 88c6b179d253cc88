"""Sound for chapter 09b: from a waveform to a (log-)mel spectrogram, and a small CNN that reads it.

Chapter 09b derives each step by hand (frames, a window, an FFT per frame, triangular mel filters)
and proves ``stft`` equal to ``torch.stft``; this module keeps the pieces it reuses::

    >>> from labkit.data import load_spoken_digits
    >>> audio, labels, info = load_spoken_digits("train")      # (700, 6000) float32 at 8 kHz
    >>> features = log_mel_spectrogram(audio)                  # (700, 40, 47): mel bands x frames
    >>> model = SpeechCNN()                                    # logits (B, 10) from (B, 1, 40, 47)

Every shape here: ``T`` samples, ``F = n_fft // 2 + 1`` frequency bins, ``M`` frames, ``K`` mel bands.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "MU_LAW_MU", "mu_law_decode", "frame_signal", "stft", "power_spectrogram", "hz_to_mel", "mel_to_hz",
    "mel_filterbank", "log_mel_spectrogram", "add_noise", "SpeechCNN",
]

MU_LAW_MU = 255  # the mu of telephones' G.711 mu-law, which the shipped clips are stored in


def mu_law_decode(codes: torch.Tensor) -> torch.Tensor:
    """8-bit mu-law codes (uint8, any shape) -> float32 samples in [-1, 1], the inverse of
    ``datasets/build.py``'s ``mu_law_encode``: y = 2·code/255 − 1, x = sign(y)·((1 + mu)^|y| − 1) / mu."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"codes must be a uint8 tensor of mu-law codes, got dtype {codes.dtype}; "
                        "load the clips with labkit.data.load_spoken_digits, which decodes them")
    companded = codes.double() * (2 / 255) - 1
    samples = companded.sign() * ((1 + MU_LAW_MU) ** companded.abs() - 1) / MU_LAW_MU
    return samples.float()


def _check_stft_args(signal: torch.Tensor, n_fft: int, hop_length: int) -> None:
    if not isinstance(signal, torch.Tensor) or not signal.is_floating_point():
        raise TypeError(f"signal must be a float tensor (..., T), got {type(signal).__name__}"
                        + (f" of dtype {signal.dtype}" if isinstance(signal, torch.Tensor) else ""))
    if n_fft < 2 or hop_length < 1:
        raise ValueError(f"n_fft must be >= 2 and hop_length >= 1, got n_fft={n_fft}, hop_length={hop_length}")
    if signal.shape[-1] <= n_fft // 2:
        raise ValueError(f"the signal has {signal.shape[-1]} samples, too few for n_fft={n_fft} with reflect padding "
                         f"(needs more than n_fft // 2 = {n_fft // 2}): use a smaller n_fft")


def frame_signal(signal: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """Overlapping frames, as ``torch.stft(center=True)`` cuts them: the signal (..., T) is padded by
    n_fft // 2 on each side by reflection, then a frame of n_fft samples starts every hop_length
    samples. Returns (..., M, n_fft) with M = 1 + T // hop_length."""
    _check_stft_args(signal, n_fft, hop_length)
    pad = n_fft // 2
    shape = signal.shape
    flat = signal.reshape(1, -1, shape[-1])                       # pad's reflect mode wants (N, C, T)
    padded = torch.nn.functional.pad(flat, (pad, pad), mode="reflect").reshape(*shape[:-1], -1)
    return padded.unfold(-1, n_fft, hop_length)                   # (..., M, n_fft), a view


def stft(signal: torch.Tensor, n_fft: int = 256, hop_length: int = 128,
         window: torch.Tensor | None = None) -> torch.Tensor:
    """Short-time Fourier transform: frames (``frame_signal``) times a window (default Hann, periodic,
    as ``torch.hann_window``), then the FFT of each frame, keeping the F = n_fft // 2 + 1 bins of
    non-negative frequency. (..., T) -> complex (..., F, M), the layout and values of
    ``torch.stft(signal, n_fft, hop_length, window=window, center=True, return_complex=True)``."""
    _check_stft_args(signal, n_fft, hop_length)
    if window is None:
        window = torch.hann_window(n_fft, dtype=signal.dtype)
    if window.shape != (n_fft,):
        raise ValueError(f"window must have shape (n_fft,) = ({n_fft},), got {tuple(window.shape)}")
    frames = frame_signal(signal, n_fft, hop_length) * window     # (..., M, n_fft)
    return torch.fft.rfft(frames, dim=-1).transpose(-1, -2)       # (..., F, M)


def power_spectrogram(signal: torch.Tensor, n_fft: int = 256, hop_length: int = 128) -> torch.Tensor:
    """|STFT|²: the energy of each frequency bin in each frame. (..., T) -> (..., F, M)."""
    return stft(signal, n_fft, hop_length).abs().pow(2)


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """The HTK mel scale: mel = 2595 · log10(1 + hz / 700), about linear below 1 kHz, logarithmic above."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor | float) -> torch.Tensor:
    """The inverse of ``hz_to_mel``."""
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = 40, n_fft: int = 256, sample_rate: int = 8000,
                   f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """Triangular filters, equally spaced on the mel scale: filter k rises from the centre of k − 1 to its
    own centre and falls to the centre of k + 1 (peak 1, no area normalisation: HTK's and torchaudio's
    ``melscale_fbanks(norm=None, mel_scale="htk")``). Returns (F, K) float32: spectrogram (..., F, M) →
    mel spectrogram by ``filters.T @ spectrogram``."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if n_mels < 1 or not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need n_mels >= 1 and 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2}, "
                         f"got n_mels={n_mels}, f_min={f_min}, f_max={f_max}")
    bins_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)        # (F,)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2,
                                     dtype=torch.float64))                                  # (K + 2,)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]                                 # (K,) each
    rising = (bins_hz[:, None] - left) / (centre - left)                                     # (F, K)
    falling = (right - bins_hz[:, None]) / (right - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def log_mel_spectrogram(signal: torch.Tensor, n_fft: int = 256, hop_length: int = 128, n_mels: int = 40,
                        sample_rate: int = 8000, floor: float = 1e-6) -> torch.Tensor:
    """log(mel filters · |STFT|² + floor): what a speech model reads. (..., T) -> (..., K, M); with the
    defaults a 0.75 s clip at 8 kHz (T = 6000) gives (40, 47)."""
    filters = mel_filterbank(n_mels, n_fft, sample_rate).to(signal.dtype)                 # (F, K)
    return torch.log(filters.T @ power_spectrogram(signal, n_fft, hop_length) + floor)   # (..., K, M)


def add_noise(signal: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The signal plus white Gaussian noise at a signal-to-noise ratio of ``snr_db`` decibels, per clip:
    noise power = mean(signal²) / 10^(snr_db / 10). (..., T) -> (..., T). ``math.inf`` adds nothing.
    Pass a seeded ``generator`` to keep the notebook's random stream apart."""
    if math.isinf(snr_db) and snr_db > 0:
        return signal.clone()
    power = signal.pow(2).mean(dim=-1, keepdim=True)                                         # (..., 1)
    noise = torch.randn(signal.shape, generator=generator, dtype=signal.dtype)
    return signal + noise * torch.sqrt(power / 10 ** (snr_db / 10))


class SpeechCNN(nn.Module):
    """A small CNN over a log-mel spectrogram (B, 1, K, M) -> logits (B, classes): two 3×3 convolution
    blocks (``channels`` filters each, batch norm, ReLU, 2×2 max-pooling), then a linear layer over the
    flattened (channels, K // 4, M // 4) map, so the position in time and frequency still counts.
    The defaults fit chapter 09b's clips: K = 40 mel bands, M = 47 frames."""

    def __init__(self, classes: int = 10, n_mels: int = 40, frames: int = 47,
                 channels: tuple[int, int] = (16, 32)) -> None:
        super().__init__()
        first, second = channels
        self.input_shape = (1, n_mels, frames)
        self.features = nn.Sequential(
            nn.Conv2d(1, first, 3, padding=1), nn.BatchNorm2d(first), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1), nn.BatchNorm2d(second), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(second * (n_mels // 4) * (frames // 4), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"SpeechCNN wants spectrograms of shape (B, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}: add the channel axis with x.unsqueeze(1), or build the model "
                             "with the n_mels and frames of your spectrograms")
        return self.head(self.features(x).flatten(1))
