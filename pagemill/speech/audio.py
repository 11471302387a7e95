"""Audio as the engines give it (16-bit mono PCM) and as it is stored (MP3, encoded by LAME from
the ``lameenc`` wheel: no system encoder needed on Lambda or on a fresh machine)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pagemill.errors import InternalError

FORMAT = "mp3"
CONTENT_TYPE = "audio/mpeg"
# Speech, mono: 48 kbit/s is clear and about 6 KB a second.
MP3_KBPS = 48
_SAMPLE_BYTES = 2


@dataclass(frozen=True)
class Pcm:
    samples: bytes  # signed 16-bit little-endian, mono
    rate: int  # samples a second

    @property
    def seconds(self) -> float:
        return len(self.samples) / _SAMPLE_BYTES / self.rate


def join(parts: Iterable[Pcm]) -> Pcm:
    """Pieces spoken one after the other, as one recording (they must share a sample rate)."""
    parts = list(parts)
    if not parts:
        raise InternalError("no audio to join")
    rates = {part.rate for part in parts}
    if len(rates) != 1:
        raise InternalError(f"audio pieces at different sample rates: {sorted(rates)}")
    return Pcm(b"".join(part.samples for part in parts), parts[0].rate)


def encode_mp3(pcm: Pcm) -> bytes:
    import lameenc  # imported here: only the speech function bundles it

    encoder = lameenc.Encoder()
    encoder.set_bit_rate(MP3_KBPS)
    encoder.set_in_sample_rate(pcm.rate)
    encoder.set_channels(1)
    encoder.set_quality(2)  # 2 = high quality (LAME's -q scale: 0 best .. 9 fastest)
    return bytes(encoder.encode(pcm.samples) + encoder.flush())
