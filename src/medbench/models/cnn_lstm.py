"""The hybrid CNN-LSTM of Lilhore et al. (Scientific Reports 13, 2023: "Hybrid CNN-LSTM model
with efficient hyperparameter tuning for prediction of Parkinson's disease"), over 1D signals
(N, C, L); not among the survey's methods (``experiments/lilhore2023_cnn_lstm.yaml``).

From the paper: time-frequency (mel-spectrogram) frames of the signal feed a CNN whose features
pass through an LSTM (optionally bidirectional) and a classification head; its
hyper-parameters (convolution widths, LSTM size, dropout, learning rate) are tuned
(``conf/search/cnn_lstm.yaml``); evaluated by 10-fold cross-validation with accuracy, true and
false positive rates.

Chosen here, where the paper is silent or its speech setting does not transfer:

- frames are computed inside the model (``torch.stft``, any device): ``stft`` gives the log
  power spectrogram, ``mel`` the log mel spectrogram with librosa's (Slaney) filter bank held
  as a fixed buffer (librosa is imported only when ``frames="mel"``: about 2 s of imports).
  A learned per-channel BatchNorm normalises the log frames.
- "a CNN per frame window": the frames are cut into windows of ``window_frames`` consecutive
  frames (hop ``window_hop``); one 2D CNN (shared weights) maps each window (frequency x time)
  to a feature vector: per width a 3x3 convolution, BatchNorm, ReLU and 2x2 max-pool, then
  global average pooling. The LSTM reads the windows' vectors in time order.
- the head reads the LSTM's last hidden state (both directions' when bidirectional), after
  dropout (``dropout`` also sits between stacked LSTM layers).
- the defaults (64-sample FFT, hop 16, non-overlapping windows of 8 frames: 5 windows of
  0.36 s over 2 s) suit 360 Hz ECG, the project's proxy, on a CPU (windows overlapping by
  half trained at half the speed here); speech at 16 kHz wants ``frames=mel``,
  ``n_fft=400``, ``hop_length=160``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medbench.errors import ConfigError
from medbench.models.registry import register_model

FRAMES = ("stft", "mel")


class TimeFrequency(nn.Module):
    """(N, C, L) signals -> (N, C, F, T) log power (``stft``) or log mel (``mel``) frames."""

    def __init__(self, frames: str, n_fft: int, hop_length: int, sample_rate: float,
                 n_mels: int, fmin: float, fmax: float | None) -> None:
        super().__init__()
        if frames not in FRAMES:
            raise ConfigError(f"model.kwargs.frames: expected one of {FRAMES}, got '{frames}'")
        if n_fft < 2 or hop_length < 1:
            raise ConfigError(f"model.kwargs: n_fft >= 2 and hop_length >= 1 expected, got "
                              f"{n_fft} and {hop_length}")
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        mel = None
        if frames == "mel":
            try:
                import librosa.filters
            except ImportError:
                raise ConfigError("model.kwargs.frames=mel needs librosa (pip install "
                                  "'librosa>=0.11'); frames=stft does not") from None
            mel = torch.from_numpy(librosa.filters.mel(
                sr=float(sample_rate), n_fft=self.n_fft, n_mels=int(n_mels), fmin=float(fmin),
                fmax=None if fmax is None else float(fmax))).float()  # (n_mels, n_fft//2 + 1)
        self.register_buffer("mel", mel, persistent=False)
        self.bins = int(n_mels) if frames == "mel" else self.n_fft // 2 + 1

    def frames_of(self, length: int) -> int:
        return 1 + length // self.hop_length  # torch.stft with center=True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, length = x.shape
        spec = torch.stft(x.reshape(n * c, length).float(), self.n_fft, self.hop_length,
                          window=self.window, center=True, return_complex=True)
        power = spec.abs().square()  # (N*C, n_fft//2 + 1, T)
        if self.mel is not None:
            power = torch.einsum("mf,bft->bmt", self.mel, power)
        return torch.log(power + 1e-6).reshape(n, c, *power.shape[-2:])


class CNNLSTM(nn.Module):
    """Frames -> a shared 2D CNN per window of frames -> LSTM -> dropout -> linear head."""

    def __init__(self, frames: TimeFrequency, in_chans: int, num_classes: int,
                 window_frames: int, window_hop: int, widths: Sequence[int], kernel_size: int,
                 hidden: int, layers: int, bidirectional: bool, dropout: float) -> None:
        super().__init__()
        if window_frames < 1 or window_hop < 1 or not widths or hidden < 1 or layers < 1:
            raise ConfigError("model.kwargs: window_frames, window_hop, hidden and layers must "
                              f"be >= 1 and widths non-empty, got {window_frames}, "
                              f"{window_hop}, {hidden}, {layers} and {list(widths)}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"model.kwargs.dropout: expected a value in [0, 1), got {dropout}")
        self.frames, self.window_frames, self.window_hop = frames, window_frames, window_hop
        self.norm = nn.BatchNorm2d(in_chans)
        layers_cnn: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            layers_cnn += [nn.Conv2d(channels, int(width), kernel_size, padding=kernel_size // 2,
                                     bias=False),
                           nn.BatchNorm2d(int(width)), nn.ReLU(inplace=True),
                           nn.MaxPool2d(2, ceil_mode=True)]
            channels = int(width)
        self.cnn = nn.Sequential(*layers_cnn, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.lstm = nn.LSTM(channels, hidden, num_layers=layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def min_length(self) -> int:
        """The shortest signal giving one window of frames."""
        return (self.window_frames - 1) * self.frames.hop_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(f"cnn_lstm takes (N, C, L) signals, got shape {tuple(x.shape)}")
        spec = self.norm(self.frames(x))  # (N, C, F, T)
        if spec.shape[-1] < self.window_frames:
            raise ValueError(f"cnn_lstm: {x.shape[-1]} samples give {spec.shape[-1]} frames, "
                             f"fewer than window_frames={self.window_frames} (signals of at "
                             f"least {self.min_length()} samples)")
        windows = spec.unfold(-1, self.window_frames, self.window_hop)  # (N, C, F, W, wf)
        n, c, f, w, wf = windows.shape
        windows = windows.permute(0, 3, 1, 2, 4).reshape(n * w, c, f, wf)
        features = self.cnn(windows).reshape(n, w, -1)  # (N, W, width)
        _, (h_n, _) = self.lstm(features)
        last = (torch.cat([h_n[-2], h_n[-1]], dim=1) if self.lstm.bidirectional else h_n[-1])
        return self.head(self.dropout(last))


@register_model(architecture="cnn_lstm", source="paper", min_input_size=112, spatial_dims=1)
def cnn_lstm(in_chans: int = 1, num_classes: int = 2, frames: str = "stft",
             sample_rate: float = 360.0, n_fft: int = 64, hop_length: int = 16,
             n_mels: int = 32, fmin: float = 0.0, fmax: float | None = None,
             window_frames: int = 8, window_hop: int = 8,
             widths: Sequence[int] = (16, 32), kernel_size: int = 3, hidden: int = 64,
             layers: int = 1, bidirectional: bool = False, dropout: float = 0.3) -> nn.Module:
    """Lilhore et al.'s hybrid CNN-LSTM over ``stft`` or ``mel`` frames (module docstring);
    the registry's minimum input (112 samples) is that of the default frames and windows."""
    tf = TimeFrequency(frames, n_fft, hop_length, sample_rate, n_mels, fmin, fmax)
    return CNNLSTM(tf, in_chans, num_classes, int(window_frames), int(window_hop),
                   [int(w) for w in widths], int(kernel_size), int(hidden), int(layers),
                   bool(bidirectional), float(dropout))
