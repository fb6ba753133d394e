"""The tag grammar (compose.tags): properties against a hand-written scanner, and real examples.

The oracle below reads text character by character, with no regular expression, so a mistake
in the module's pattern cannot hide by being copied into the test.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from compose import tags
from compose.model import SkipRecord

# ---------------------------------------------------------------------------------------------
# The oracle: an independent scanner of the grammar in docs/tag-grammar.md.

_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_DIGITS = "0123456789"


@dataclass(frozen=True)
class Ref:
    kind: str  # "tag", "placeholder" or "mention"
    start: int
    end: int
    digits: str | None  # the number as written ("-1" for a negative tag); None for placeholders
    digits_at: int | None  # where the digits start


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _digits_end(text: str, i: int) -> int:
    while i < len(text) and text[i] in _DIGITS:
        i += 1
    return i


def oracle(text: str) -> list[Ref]:
    """Every tag, placeholder and mention of `text`, left to right, never overlapping."""
    low = text.translate(_LOWER)  # ASCII case folding only, so indices stay aligned
    refs: list[Ref] = []
    i = 0
    while i < len(text):
        ref = _tag_at(text, low, i) or _placeholder_at(low, i) or _mention_at(text, low, i)
        if ref is None:
            i += 1
        else:
            refs.append(ref)
            i = ref.end
    return refs


def _tag_at(text: str, low: str, i: int) -> Ref | None:
    if not low.startswith("<image-", i):
        return None
    sign = i + 7
    first = sign + 1 if text[sign : sign + 1] == "-" else sign
    end = _digits_end(text, first)
    if end == first or text[end : end + 1] != ">":
        return None
    return Ref("tag", i, end + 1, text[sign:end], sign)


def _placeholder_at(low: str, i: int) -> Ref | None:
    for placeholder in ("<imagehere>", "<image>"):
        if low.startswith(placeholder, i):
            return Ref("placeholder", i, i + len(placeholder), None, None)
    return None


def _mention_at(text: str, low: str, i: int) -> Ref | None:
    if not low.startswith("image", i):
        return None
    if i > 0 and (_is_word(text[i - 1]) or text[i - 1] == "<"):
        return None
    first = i + 5
    if text[first : first + 1] in (" ", "_", "-"):
        first += 1
    end = _digits_end(text, first)
    if end == first or (end < len(text) and _is_word(text[end])):
        return None
    return Ref("mention", i, end, text[first:end], first)


def skeleton(text: str) -> str:
    """`text` with the number of every tag and mention replaced by '#'."""
    out, position = [], 0
    for ref in oracle(text):
        if ref.digits is not None:
            out.append(text[position : ref.digits_at])
            out.append("#")
            position = ref.digits_at + len(ref.digits)
    out.append(text[position:])
    return "".join(out)


def value(digits: str) -> int:
    """The documented reading of a number: more than 9 significant digits is `TOO_LARGE`."""
    return int(digits) if len(digits.lstrip("-").lstrip("0")) <= 9 else tags.TOO_LARGE


def numbers(text: str, kind: str) -> list[int]:
    return [value(r.digits) for r in oracle(text) if r.kind == kind]


def reindex_accepts(text: str) -> bool:
    """What `reindex` takes: no placeholder, every number from 1 to 9 significant digits."""
    return all(
        ref.kind != "placeholder" and int(ref.digits) >= 1 and len(ref.digits.lstrip("0")) <= 9
        for ref in oracle(text)
    )


def is_canonical(text: str) -> bool:
    """What parse_dialogue writes: also tags in lower case and (here) numbers below a million."""
    return reindex_accepts(text) and all(
        int(ref.digits) < 10**6 and (ref.kind != "tag" or text.startswith("<image-", ref.start))
        for ref in oracle(text)
    )


def without_introductions(text: str) -> str:
    """`text` with every tag and placeholder cut out."""
    kept, position = [], 0
    for ref in oracle(text):
        if ref.kind != "mention":
            kept.append(text[position : ref.start])
            position = ref.end
    kept.append(text[position:])
    return "".join(kept)


def oracle_problems(texts: list[str], n_images: int) -> set[str]:
    """The reject reasons a dialogue deserves, by the rules of docs/tag-grammar.md."""
    problems: set[str] = set()
    introduced: dict[int, int] = {}
    order: list[int] = []
    mentioned: list[tuple[int, int]] = []
    placeholders = 0
    for turn, text in enumerate(texts):
        for ref in oracle(text):
            if ref.kind == "placeholder":
                placeholders += 1
                number = placeholders
            else:
                number = int(ref.digits)
            if not 1 <= number <= n_images:
                problems.add("tag_past_images")
            elif ref.kind == "mention":
                mentioned.append((turn, number))
            elif number in introduced:
                problems.add("image_introduced_twice")
            else:
                introduced[number] = turn
                order.append(number)
    if order != sorted(order):
        problems.add("images_out_of_order")
    if len(introduced) < n_images or any(
        introduced.get(n, turn + 1) > turn for turn, n in mentioned
    ):
        problems.add("image_never_introduced")
    return problems


def test_oracle_reads_the_documented_examples():
    refs = oracle("Image1: <ImageHere>. Compare image 2, IMAGE_3, image-4 and <image-5>.")
    assert [(r.kind, r.digits) for r in refs] == [
        ("mention", "1"),
        ("placeholder", None),
        ("mention", "2"),
        ("mention", "3"),
        ("mention", "4"),
        ("tag", "5"),
    ]
    tricky = "Image10 Image12b myImage1 Images 2 <image>"
    assert [(r.kind, r.digits) for r in oracle(tricky)] == [
        ("mention", "10"),
        ("placeholder", None),
    ]


# ---------------------------------------------------------------------------------------------
# Strategies.

# Pieces that sit next to, or look like, references: glued together without spaces they make
# new words (`Image1` + `0` is `Image10`), which is the point.
TRICKY = [
    "Image10",
    "Image12b",
    "myImage1",
    "Images 2",
    "<image-1>",
    "<image-2>",
    "<image-3>",
    "<IMAGE-4>",
    "<image>",
    "<ImageHere>",
    "<imagehere>",
    "<image--1>",
    "<image-0>",
    "<image-",
    "<image",
    "<Image 3>",
    "image",
    "Image",
    "IMAGE",
    "Image 1",
    "image-1",
    "Image_1",
    "Image1",
    "Image2",
    "image 3",
    "imagery",
    "ımage1",
    "İmage1",
    "Image١",
    "é",
    "_",
    "-",
    " ",
    "  ",
    "\n",
    ",",
    ".",
    ":",
    "?",
    "(",
    ">",
    "<",
]
NOISE = st.text(alphabet=string.digits + "abI -_<>.,:é", max_size=4)
mixed_texts = st.lists(st.sampled_from(TRICKY) | NOISE, max_size=14).map("".join)

SPELLINGS = ["Image", "image", "IMAGE", "imaGe"]
SEPARATORS = ["", " ", "_", "-"]


@st.composite
def mention(draw: st.DrawFn, number: int) -> str:
    padded = draw(st.booleans()) and number < 10
    digits = f"{number:02d}" if padded else str(number)
    return draw(st.sampled_from(SPELLINGS)) + draw(st.sampled_from(SEPARATORS)) + digits


# Words that are never references whatever the neighbours, when joined with spaces.
SAFE_WORDS = [
    "the",
    "Images 2",
    "myImage1",
    "Image12b",
    "imagery",
    "Image four",
    "1999",
    "3.5",
    ",",
    ".",
    "?",
    "\n",
    "<Image 3>",
    "(see",
    "above)",
]


CANONICAL_TRICKY = [piece for piece in TRICKY if is_canonical(piece)]


@st.composite
def glued_texts(draw: st.DrawFn) -> str:
    """Tags, mentions and tricky words glued together; `canonical_texts` keeps canonical ones."""
    pieces = []
    for _ in range(draw(st.integers(0, 12))):
        choice = draw(st.integers(0, 3))
        number = draw(st.integers(1, 30))
        if choice == 0:
            pieces.append(tags.tag(number))
        elif choice == 1:
            pieces.append(draw(mention(number)))
        else:
            pieces.append(draw(st.sampled_from(CANONICAL_TRICKY + SAFE_WORDS) | NOISE))
    return "".join(pieces)


canonical_texts = glued_texts().filter(is_canonical)


@st.composite
def sequential_texts(draw: st.DrawFn, first: int) -> str:
    """Canonical texts whose tags run first, first+1, ... in order (what `render` can undo)."""
    pieces = draw(st.lists(st.sampled_from(SAFE_WORDS) | st.just("TAG") | NOISE, max_size=14))
    mentioned = draw(st.lists(st.integers(1, 40), max_size=4))
    pieces += [draw(mention(n)) for n in mentioned]
    pieces = draw(st.permutations(pieces))
    text = " ".join(pieces)
    number = first
    while "TAG" in text:
        text = text.replace("TAG", tags.tag(number), 1)
        number += 1
    return text


FORMS = ["Image{k}: {ph}", "Image {k}: {ph}.", "image{k}: {ph}.", "{ph}", "Image_{k} {ph}"]


@dataclass(frozen=True)
class Dialogue:
    texts: list[str]
    n_images: int


@st.composite
def dialogues(draw: st.DrawFn) -> Dialogue:
    """Valid MMDU-, LLaVA- or tag-style dialogues: images introduced progressively, then named."""
    n_turns = draw(st.integers(1, 6))
    n_images = draw(st.integers(0, 7))
    intro_turns = sorted(
        draw(st.lists(st.integers(0, n_turns - 1), min_size=n_images, max_size=n_images))
    )
    explicit = draw(st.booleans())
    turns: list[list[str]] = [[] for _ in range(n_turns)]
    for k, turn in enumerate(intro_turns, start=1):
        placeholder = tags.tag(k) if explicit else draw(st.sampled_from(["<ImageHere>", "<image>"]))
        turns[turn].append(draw(st.sampled_from(FORMS)).format(k=k, ph=placeholder))
    for index, words in enumerate(turns):
        known = [k for k, turn in enumerate(intro_turns, start=1) if turn <= index]
        for _ in range(draw(st.integers(0, 5))):
            if known and draw(st.booleans()):
                words.append(draw(mention(draw(st.sampled_from(known)))))
            else:
                words.append(draw(st.sampled_from(SAFE_WORDS)))
    return Dialogue([" ".join(words) for words in turns], n_images)


offsets = st.integers(0, 1000)


# ---------------------------------------------------------------------------------------------
# Properties.


@given(mixed_texts)
@settings(max_examples=400)
def test_mentions_are_found_exactly_where_the_oracle_finds_them(text):
    assert tags.mentions(text) == numbers(text, "mention")


@given(st.text() | mixed_texts.map(lambda t: t.replace("1", "1" * 5000)))
@settings(max_examples=50)
def test_reading_numbers_never_raises(text):
    assert tags.mentions(text) == numbers(text, "mention")
    # `introductions` reads canonical tags only: lower case, no sign.
    canonical_tags = [
        r for r in oracle(text) if r.kind == "tag" and text.startswith("<image-", r.start)
    ]
    assert tags.introductions(text) == [
        value(r.digits) for r in canonical_tags if r.digits[0] != "-"
    ]


@given(st.lists(mixed_texts, min_size=1, max_size=3), st.data())
@settings(max_examples=400)
def test_parse_dialogue_accepts_exactly_what_the_rules_accept(texts, data):
    introductions = sum(r.kind != "mention" for text in texts for r in oracle(text))
    n_images = data.draw(st.integers(0, introductions + 1))
    problems = oracle_problems(texts, n_images)
    try:
        turns = tags.parse_dialogue(texts, n_images)
    except SkipRecord as skip:
        assert skip.reason in problems
        return
    assert not problems
    placeholders = iter(range(1, n_images + 1))
    for turn, text in zip(turns, texts, strict=True):
        expected = [
            next(placeholders) if r.kind == "placeholder" else int(r.digits)
            for r in oracle(text)
            if r.kind != "mention"
        ]
        assert list(turn.introduces) == expected
        assert list(turn.mentions) == numbers(text, "mention")
        assert numbers(turn.text, "tag") == expected
        assert without_introductions(turn.text) == without_introductions(text)
        assert is_canonical(turn.text)


@given(mixed_texts)
def test_reindex_by_zero_is_identity_or_refuses_a_text_that_is_not_canonical(text):
    if reindex_accepts(text):
        assert tags.reindex(text, 0) == text
    else:
        with pytest.raises(ValueError):
            tags.reindex(text, 0)


@given(canonical_texts)
def test_reindex_by_zero_is_identity(text):
    assert tags.reindex(text, 0) == text


@given(canonical_texts, offsets, offsets)
@settings(max_examples=300)
def test_reindex_by_a_then_b_is_reindex_by_a_plus_b(text, a, b):
    assert tags.reindex(tags.reindex(text, a), b) == tags.reindex(text, a + b)


@given(canonical_texts, offsets, st.integers(-1000, 1000))
def test_reindex_composes_with_negative_shifts_that_stay_in_range(text, a, b):
    unpadded = all(not r.digits.startswith("0") for r in oracle(text))
    lowest = min((int(r.digits) for r in oracle(text)), default=1)
    assume(unpadded and lowest + a + b >= 1)
    assert tags.reindex(tags.reindex(text, a), b) == tags.reindex(text, a + b)
    assert tags.reindex(tags.reindex(text, a), -a) == text


@given(canonical_texts, offsets)
@settings(max_examples=300)
def test_reindex_changes_nothing_but_the_numbers_and_shifts_each_by_the_offset(text, offset):
    out = tags.reindex(text, offset)
    assert skeleton(out) == skeleton(text)
    for kind in ("tag", "mention"):
        assert numbers(out, kind) == [n + offset for n in numbers(text, kind)]
    assert tags.introductions(out) == [n + offset for n in tags.introductions(text)]
    assert tags.mentions(out) == [n + offset for n in tags.mentions(text)]


@given(canonical_texts, st.integers(1, 50))
def test_reindex_below_one_is_refused_not_written(text, excess):
    refs = oracle(text)
    assume(refs)
    lowest = min(int(r.digits) for r in refs)
    with pytest.raises(ValueError, match="numbers start at 1"):
        tags.reindex(text, -lowest - excess + 1)


@given(st.integers(1, 5), st.sampled_from(["mmdu", "llava", "canonical"]), st.data())
@settings(max_examples=300)
def test_parse_undoes_render(first, style, data):
    text = data.draw(sequential_texts(first))
    rendered = tags.render(text, style)
    assert tags.parse(rendered, style, first) == text


@given(canonical_texts)
def test_strip_tags_removes_exactly_the_tags(text):
    kept, position = [], 0
    for ref in oracle(text):
        if ref.kind == "tag":
            kept.append(text[position : ref.start])
            position = ref.end
    kept.append(text[position:])
    assert tags.strip_tags(text) == "".join(kept)
    assert tags.introductions(text) == numbers(text, "tag")


@given(canonical_texts)
def test_render_parts_interleaves_text_and_images_in_order(text):
    parts = tags.render_parts(text, lambda n: f"img://{n}")
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert images == [f"img://{n}" for n in tags.introductions(text)]
    assert "".join(p["text"] for p in parts if p["type"] == "text") == tags.strip_tags(text)
    assert all(p["text"] for p in parts if p["type"] == "text")
    kinds = [p["type"] for p in parts]
    assert all(not (a == b == "text") for a, b in zip(kinds, kinds[1:], strict=False))
    assert all(set(p) == {"type", p["type"]} for p in parts)


@given(dialogues())
@settings(max_examples=200)
def test_canonical_dialogues_parse_to_themselves(dialogue):
    turns = tags.parse_dialogue(dialogue.texts, dialogue.n_images)
    again = tags.parse_dialogue([t.text for t in turns], dialogue.n_images)
    assert again == turns
    assert [n for t in turns for n in t.introduces] == list(range(1, dialogue.n_images + 1))
    for turn, text in zip(turns, dialogue.texts, strict=True):
        assert list(turn.mentions) == numbers(text, "mention")
        assert tags.introductions(turn.text) == list(turn.introduces)
        assert tags.mentions(turn.text) == list(turn.mentions)


@given(dialogues(), dialogues())
@settings(max_examples=200)
def test_splicing_keeps_a_and_shifts_b_by_the_images_of_a(a, b):
    first = tags.parse_dialogue(a.texts, a.n_images)
    second = tags.parse_dialogue(b.texts, b.n_images)
    shift = a.n_images
    spliced = [t.text for t in first] + [tags.reindex(t.text, shift) for t in second]
    joined = tags.parse_dialogue(spliced, a.n_images + b.n_images)

    assert [t.text for t in joined] == spliced
    assert joined[: len(first)] == first
    for old, new in zip(second, joined[len(first) :], strict=True):
        assert new.introduces == tuple(n + shift for n in old.introduces)
        assert new.mentions == tuple(n + shift for n in old.mentions)
        assert skeleton(new.text) == skeleton(old.text)


@given(dialogues())
def test_a_placeholder_dialogue_renders_back_to_its_source(dialogue):
    assume(not any("<image-" in t for t in dialogue.texts))  # explicit tags have no placeholder
    turns = tags.parse_dialogue(dialogue.texts, dialogue.n_images)
    rendered = [tags.render(t.text, "mmdu") for t in turns]
    assert rendered == [t.replace("<image>", "<ImageHere>") for t in dialogue.texts]


# ---------------------------------------------------------------------------------------------
# Examples: the MMDU paper's figures and the benchmark's progressive introductions.

FIGURE_9 = [
    "image1: <ImageHere>. What ancient cultural practice is reflected in the remains "
    "depicted in the Image1?",
    "The remains depicted in the Image1 reflect the ancient cultural practice of Roman "
    "public bathing.",
    "Image2: <ImageHere>. What architectural style is prominently featured in the buildings "
    "as seen in the Image2?",
    "The architectural style prominently featured in the buildings as seen in the Image2 is "
    "Gothic. Another hallmark of Gothic architecture that is evident in the Image2 is the "
    "extensive use of large stained glass windows.",
    "Discuss the architectural or artistic elements that make the buildings in Image1 and "
    "Image2 significant or unique.",
    "The Roman ruins in Image1 showcase the practical and engineering skills of the Romans. "
    "The Gothic cathedral in Image2 stands out.",
]

FIGURE_10 = [
    "Image 1: <ImageHere>. Image 2: <ImageHere>. Image 3: <ImageHere>. Image 4: <ImageHere>. "
    "Image 5: <ImageHere>. Describe image 1 to image 5.",
    'The first image, "image 1," showcases a recreational powerboat. Image four, "image 4," '
    "features a lifebuoy.",
    "Image 6: <ImageHere>. Image 7: <ImageHere>. Image 8: <ImageHere>. Compare the size and "
    "potential uses of the watercraft in image 1, image 6, image 7, and image 8.",
    "Image 6 presents an aircraft carrier. Image 7 depicts a modern aircraft carrier, which, "
    "like the one in image 6, operates as a mobile airbase.",
    "Based on the type of water bodies that seem to be shown in image 1, image 7, and image 8, "
    "describe the different types of environments in which these vessels might operate.",
    "The water bodies in image 1, image 7, and image 8 showcase different environments.",
]


def test_figure_9_two_images_introduced_in_later_questions():
    turns = tags.parse_dialogue(FIGURE_9, 2)
    assert turns[0].text == (
        "image1: <image-1>. What ancient cultural practice is reflected in the remains "
        "depicted in the Image1?"
    )
    assert [t.introduces for t in turns] == [(1,), (), (2,), (), (), ()]
    assert [t.mentions for t in turns] == [(1, 1), (1,), (2, 2), (2, 2), (1, 2), (1, 2)]
    assert [tags.render(t.text, "mmdu") for t in turns] == FIGURE_9

    shifted = tags.reindex(turns[0].text, 3)
    assert shifted == (
        "image4: <image-4>. What ancient cultural practice is reflected in the remains "
        "depicted in the Image4?"
    )
    assert tags.render(shifted, "llava").startswith("image4: <image>. What")


def test_figure_10_progressive_introductions_in_a_later_question():
    turns = tags.parse_dialogue(FIGURE_10, 8)
    assert [t.introduces for t in turns] == [(1, 2, 3, 4, 5), (), (6, 7, 8), (), (), ()]
    assert turns[2].text.startswith("Image 6: <image-6>. Image 7: <image-7>. Image 8: <image-8>.")
    # "Image four" is prose, not a mention; "image 4" in quotes is one.
    assert turns[1].mentions == (1, 4)
    assert turns[2].mentions == (6, 7, 8, 1, 6, 7, 8)
    assert [tags.render(t.text, "mmdu") for t in turns] == FIGURE_10

    # Spliced after a 3-image dialogue: one pass, so image 5 -> 8 and image 8 -> 11, not 14.
    shifted = [tags.reindex(t.text, 3) for t in turns]
    assert shifted[0].endswith("Image 8: <image-8>. Describe image 4 to image 8.")
    assert "in image 4, image 9, image 10, and image 11." in shifted[2]
    assert "Image four" in shifted[1]
    assert tags.parse_dialogue(["<image-1> <image-2> <image-3>", *shifted], 11)


def test_llava_placeholders_are_positional_across_turns():
    turns = tags.parse_dialogue(["<image>\nWhat is this?", "A cat.", "And <image>?", "A dog."], 2)
    assert [t.text for t in turns] == [
        "<image-1>\nWhat is this?",
        "A cat.",
        "And <image-2>?",
        "A dog.",
    ]
    assert tags.render(turns[2].text, "llava") == "And <image>?"


def test_openai_parts_place_images_where_their_tags_stood():
    text = "Image1: <image-1>. Image2: <image-2>.Compare them."
    assert tags.render_parts(text, lambda n: f"{n}.jpg") == [
        {"type": "text", "text": "Image1: "},
        {"type": "image_url", "image_url": {"url": "1.jpg"}},
        {"type": "text", "text": ". Image2: "},
        {"type": "image_url", "image_url": {"url": "2.jpg"}},
        {"type": "text", "text": ".Compare them."},
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Image1", [1]),
        ("Image 1", [1]),
        ("image-1", [1]),
        ("Image_1", [1]),
        ("IMAGE1", [1]),
        ("(Image1)", [1]),
        ("Image1's", [1]),
        ("Image1.5", [1]),
        ("Image10", [10]),
        ("Image12b", []),
        ("myImage1", []),
        ("Images 2", []),
        ("Images 1 and 2", []),
        ("image  1", []),
        ("Image--1", []),
        ("<image1>", []),
        ("<Image 3>", []),
        ("<image-3>", []),
        ("ımage1", []),
        ("Image١", []),
        ("image 1 to image 5", [1, 5]),
        ("Image1Image2", []),
        ("Image1-Image2", [1, 2]),
    ],
)
def test_mention_word_boundaries(text, expected):
    assert tags.mentions(text) == expected
    assert numbers(text, "mention") == expected


def test_reindex_keeps_each_spelling():
    text = "Image 2, image-2, IMAGE_2, imaGe2, Image_02, <image-2>; Images 2, myImage2 stay."
    assert tags.reindex(text, 9) == (
        "Image 11, image-11, IMAGE_11, imaGe11, Image_11, <image-11>; Images 2, myImage2 stay."
    )
    assert tags.reindex("Image_02", 1) == "Image_03"


def test_reindex_never_chains():
    assert tags.reindex("Image1 Image2 Image3 <image-1> <image-2>", 1) == (
        "Image2 Image3 Image4 <image-2> <image-3>"
    )


@pytest.mark.parametrize(
    "text",
    ["<ImageHere>", "<image>", "<image-0>", "Image0", "<image--1>", "<image-" + "9" * 50 + ">"],
)
def test_reindex_refuses_text_that_is_not_canonical(text):
    with pytest.raises(ValueError):
        tags.reindex(text, 1)


def test_render_styles():
    text = "Image1: <image-1>. What is it?"
    assert tags.render(text, "canonical") == text
    assert tags.render(text, "mmdu") == "Image1: <ImageHere>. What is it?"
    assert tags.render(text, "llava") == "Image1: <image>. What is it?"
    with pytest.raises(ValueError, match="render_parts"):
        tags.render(text, "openai")
    with pytest.raises(ValueError, match="unknown"):
        tags.render(text, "html")
    with pytest.raises(ValueError, match="unknown"):
        tags.parse(text, "openai")
    assert tags.STYLES == ("canonical", "mmdu", "llava", "openai")


def test_parse_numbers_placeholders_from_first_and_keeps_explicit_tags():
    assert tags.parse("<ImageHere> and <image> then <image-9>", "mmdu", 4) == (
        "<image-4> and <image-5> then <image-9>"
    )


# ---------------------------------------------------------------------------------------------
# Every reject reason parse_dialogue raises, and the broken references it must not keep.

REJECTS = [
    (["<image-3>"], 2, "tag_past_images", "turn 1: image tag 3 is outside the image list"),
    (["<ImageHere>", "<ImageHere>"], 1, "tag_past_images", "turn 2: placeholder 2"),
    (["<ImageHere> Image2"], 1, "tag_past_images", "turn 1: mention 2"),
    (["<image-0>"], 1, "tag_past_images", "image tag 0"),
    (["<ImageHere> Image0"], 1, "tag_past_images", "mention 0"),
    (["<image--1>"], 1, "tag_past_images", "image tag -1"),
    (["<image-99999999999999999999>"], 1, "tag_past_images", "image tag 99999999999999999999"),
    (["<image-" + "9" * 5000 + ">"], 1, "tag_past_images", "(5000 characters)"),
    (["<ImageHere> Image" + "9" * 5000], 1, "tag_past_images", "mention 999999999999..."),
    (["<ImageHere>", "only one"], 2, "image_never_introduced", "image 2 of 2"),
    (["What is Image1?"], 1, "image_never_introduced", "image 1 of 1"),
    (
        ["Image1: <ImageHere>. Compare it with Image2.", "Sure.", "Image2: <ImageHere>."],
        2,
        "image_never_introduced",
        "turn 1 mentions image 2 before turn 3",
    ),
    (["<image-1> <image-1>"], 1, "image_introduced_twice", "image 1 is introduced twice"),
    (["<ImageHere>", "<image-1>"], 1, "image_introduced_twice", "turns 1 and 2"),
    (["<image-2>", "ok", "<image-1>"], 2, "images_out_of_order", "[2, 1]"),
    (["<image-2> <ImageHere>"], 2, "images_out_of_order", "[2, 1]"),
]


@pytest.mark.parametrize(("texts", "n_images", "reason", "detail"), REJECTS)
def test_each_reject_reason(texts, n_images, reason, detail):
    with pytest.raises(SkipRecord) as caught:
        tags.parse_dialogue(texts, n_images)
    assert caught.value.reason == reason
    assert detail in caught.value.detail
    assert len(caught.value.detail) < 200


def test_valid_edge_cases_are_accepted():
    assert tags.parse_dialogue([], 0) == []
    assert tags.parse_dialogue(["no images here, not even Image12b"], 0)[0].mentions == ()
    # A mention in the same turn as its introduction, before the placeholder, is fine.
    (turn,) = tags.parse_dialogue(["Image1 is this one: <IMAGEHERE>"], 1)
    assert turn.text == "Image1 is this one: <image-1>"
    # Explicit tags in any case are canonicalised to lower case.
    (turn,) = tags.parse_dialogue(["<IMAGE-1> and <Image-02>"], 2)
    assert turn.text == "<image-1> and <image-2>"
    # Plural prose and unknown forms are left exactly as written.
    (turn,) = tags.parse_dialogue(["<image> Images 1 and 2, <image1>, image one"], 1)
    assert turn.text == "<image-1> Images 1 and 2, <image1>, image one"
    assert turn.mentions == ()


def test_known_limits_are_left_exactly_as_written():
    """docs/tag-grammar.md, "Known limits": these are not references and never move."""
    prose = (
        "Images 1 and 2, Image four, the first image, Image #1, Img1, Fig. 1, Image\t1, "
        "image  1, <image1>, <image-1 unclosed, ｉｍａｇｅ1, Image１, ımage1."
    )
    assert tags.mentions(prose) == []
    assert tags.reindex(prose, 3) == prose
    (turn,) = tags.parse_dialogue([prose], 0)
    assert turn.text == prose


def test_a_file_name_in_prose_is_read_as_a_mention():
    # Documented limit: `image_1.jpg` is word-bounded `image_1`, so it is re-indexed with the rest.
    assert tags.mentions("saved as image_1.jpg") == [1]
    assert tags.reindex("saved as image_1.jpg", 3) == "saved as image_4.jpg"
    with pytest.raises(SkipRecord, match="mention 20240101"):
        tags.parse_dialogue(["<ImageHere> from image_20240101.png"], 1)


def test_strip_tags_can_join_neighbours_into_a_mention_shape():
    # Only a token-count input, never parsed again: documented, not a bug.
    assert tags.strip_tags("Image<image-1>5") == "Image5"


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.sampled_from(
            [
                "<image>",
                "<ImageHere>",
                "<IMAGEhere>",
                "<image-3>",
                "<image",
                "image>",
                "<<image>",
                "Image 2",
                "imagehere>",
                "<imag",
                "e>",
                "<",
                ">",
                "-",
                "x",
                " ",
                "İ",
                "K",
                "ı",
            ]
        ),  # fmt: skip
        max_size=12,
    ),
    first=st.integers(1, 50),
)
def test_parse_numbers_exactly_the_placeholders_the_scan_finds(pieces, first):
    text = "".join(pieces)
    expected, position, number = [], 0, first
    for ref in tags.refs(text):
        if ref.kind == "placeholder":
            expected += [text[position : ref.start], tags.tag(number)]
            number, position = number + 1, ref.end
    assert tags.parse(text, "mmdu", first=first) == "".join([*expected, text[position:]])


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.sampled_from(
            [
                "Image 1",
                "image2",
                "IMAGE_3",
                "Image-9",
                "image-4>",
                "<image-3>",
                "<image--1>",
                "myImage5",
                "Image12b",
                "<",
                ">",
                "-",
                "_",
                " ",
                "x",
                "İ",
                "ı",
                "²",
                "7",
                "image",
            ]
        ),  # fmt: skip
        max_size=12,
    )
)
def test_mentions_are_the_scans_mentions(pieces):
    text = "".join(pieces)
    scanned = [tags._number(r.digits) for r in tags.refs(text) if r.kind == "mention"]
    assert tags.mentions(text) == scanned
