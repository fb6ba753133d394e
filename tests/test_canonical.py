"""compose.canonical: one reading of a sample's texts for the loader (strict) and the checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compose import tags
from compose.canonical import canonical_texts
from compose.sample_checks import canonical_texts as checked_texts

PIECES = ["<ImageHere>", "<image>", "<IMAGEHERE>", "<image-1>", "<image-2>", "<image-3>"]
PIECES += ["Image1", "image 2", " words ", "<image-0>", "<imagehere", "<"]


def parsed_message_by_message(sample: dict) -> list[str]:
    """What the checks read before the merge: `tags.parse` per message, its first number after
    every tag of the messages before (placeholders and tags written as such alike)."""
    texts, seen = [], 0
    for message in sample["messages"]:
        texts.append(tags.parse(message["content"], sample["style"], first=seen + 1))
        seen += len(tags.introductions(texts[-1])) if sample["style"] != "canonical" else 0
    return texts


@given(
    st.sampled_from(["mmdu", "llava", "canonical"]),
    st.lists(st.lists(st.sampled_from(PIECES), max_size=5).map("".join), min_size=1, max_size=5),
)
def test_the_checks_accept_only_what_they_accepted_before(style, contents):
    """Placeholders are numbered across the sample, as a consumer counts them; a tag written as
    such in a placeholder style (never rendered) is no placeholder. Where that reading differs
    from the message-by-message one, its introductions are out of order, which the reference
    checks report: the checks are never weaker for the merge."""
    sample = {"style": style, "messages": [{"content": c} for c in contents], "images": []}
    texts = canonical_texts(sample)
    assert checked_texts(sample) == texts
    introduced = [n for text in texts for n in tags.introductions(text)]
    if introduced == list(range(1, len(introduced) + 1)):
        assert texts == parsed_message_by_message(sample)


def openai_sample(url: str) -> dict:
    image = {"type": "image_url", "image_url": {"url": url}}
    return {
        "style": "openai",
        "images": [{"member": "k.1.png", "number": 1}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "See "}, image]},
            {"role": "assistant", "content": "plain text, as the schema allows"},
        ],
    }


def test_an_unknown_image_part_stops_the_loader_and_is_reported_by_the_checks():
    assert canonical_texts(openai_sample("k.1.png")) == [
        "See <image-1>",
        "plain text, as the schema allows",
    ]
    with pytest.raises(ValueError, match="'k.9.png' names no image of the sample"):
        canonical_texts(openai_sample("k.9.png"))
    texts = checked_texts(openai_sample("k.9.png"))
    assert texts == ["See <image-0>", "plain text, as the schema allows"]
    assert tags.introductions(texts[0]) == [0]  # outside 1..n: the reference checks say so
