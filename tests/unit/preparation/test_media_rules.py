"""Media rules of seed 004 'Upload Media' checked before upload and by ``dispatcher
validate``, each refusal naming the rule (``preparation.media_rules``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.campaigns.checks import preflight
from dispatcher.errors import CampaignSpecError, MediaError
from dispatcher.preparation.media import read_media
from tests.unit.preparation import media_samples as samples


@pytest.mark.parametrize(
    ("name", "kind", "content", "content_type"),
    [
        ("a.png", "image", samples.image("RGB"), "image/png"),
        ("a.png", "image", samples.image("RGBA"), "image/png"),
        ("a.jpg", "image", samples.image("RGB", "JPEG"), "image/jpeg"),
        ("s.webp", "sticker", samples.webp(), "image/webp"),
        ("s.webp", "sticker", samples.webp(animated=True, noise=200), "image/webp"),
        ("v.ogg", "audio", samples.ogg_opus(), "audio/ogg"),
        ("v.opus", "audio", samples.ogg_opus(), "audio/opus"),
        ("a.m4a", "audio", samples.mp4(samples.AAC, brand=b"M4A "), "audio/mp4"),
        ("a.mp4", "audio", samples.mp4(samples.AAC), "audio/mp4"),
        ("v.mp4", "video", samples.mp4(samples.H264, samples.AAC), "video/mp4"),
        ("v.mp4", "video", samples.mp4(samples.H264), "video/mp4"),
        ("v.3gp", "video", samples.mp4(samples.H264, samples.AAC, brand=b"3gp4"), "video/3gp"),
    ],
)  # fmt: skip
def test_a_file_that_follows_the_rules_is_accepted_with_its_type(
    tmp_path: Path, name: str, kind: str, content: bytes, content_type: str
) -> None:
    (tmp_path / name).write_bytes(content)
    assert read_media(tmp_path / name, kind).content_type == content_type


@pytest.mark.parametrize(
    ("name", "kind", "content", "rule"),
    [
        ("a.png", "image", samples.image("P"), "8-bit RGB or RGBA; this PNG is 1-bit palette"),
        ("a.png", "image", samples.image("L"), "8-bit RGB or RGBA; this PNG is 8-bit greyscale"),
        ("a.png", "image", samples.png_16bit_rgb(), "8-bit RGB or RGBA; this PNG is 16-bit RGB"),
        ("a.jpg", "image", samples.image("CMYK", "JPEG"), "this one is 8-bit CMYK"),
        ("s.webp", "sticker", samples.webp(noise=200), "static stickers are at most 100 KB"),
        ("s.webp", "sticker", samples.image("RGB"), "stickers must be WebP"),
        ("v.ogg", "audio", samples.ogg_vorbis(), "Opus codec (base audio/ogg is not supported)"),
        ("a.m4a", "audio", samples.mp4(samples.H264, samples.AAC), "has a video track"),
        ("v.mp4", "video", samples.mp4(samples.HEVC, samples.AAC), "H.264 with AAC audio"),
        ("v.mp4", "video", samples.mp4(samples.H264, samples.OPUS_IN_MP4), "audio track is 'Opus'"),
        ("v.mp4", "video", samples.mp4(samples.H264, samples.AAC, samples.AAC), "2 audio streams"),
        ("v.mp4", "video", samples.mp4(samples.AAC), "no video track"),
        ("v.mp4", "video", b"not an mp4 at all", "not a readable MP4/3GP file"),
    ],
)  # fmt: skip
def test_a_file_that_breaks_a_rule_is_refused_naming_it(
    tmp_path: Path, name: str, kind: str, content: bytes, rule: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MediaError) as caught:
        read_media(tmp_path / name, kind)
    assert rule in str(caught.value)
    assert str(caught.value).startswith(name)


SPEC = """\
name: Voice note
sender: {source: "+4790000000", level: STANDARD}
message: {type: audio, audio: {file: note.ogg}}
outside_care_window: send
recipients: people.csv
"""


def test_validate_names_the_field_and_the_rule(tmp_path: Path) -> None:
    (tmp_path / "campaign.yaml").write_text(SPEC)
    (tmp_path / "people.csv").write_text("phone\n+4791234567\n")
    (tmp_path / "note.ogg").write_bytes(samples.ogg_vorbis())
    with pytest.raises(CampaignSpecError) as caught:
        preflight(tmp_path)
    (field, message), *_ = caught.value.problems
    assert field == "message.audio"
    assert "note.ogg (audio/ogg): audio/ogg must be Ogg with the Opus codec" in message
    (tmp_path / "note.ogg").write_bytes(samples.ogg_opus())
    assert preflight(tmp_path).media[0].content_type == "audio/ogg"
