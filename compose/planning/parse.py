"""Token budgets as people write them (`64k`, `32k..128k:16k`, `50%`), read exactly: a budget
that is not a whole number of tokens is refused, never rounded."""

from __future__ import annotations

import re

_TOKENS = re.compile(r"(\d+(?:\.\d+)?)\s*([km]?)", re.IGNORECASE)


def parse_tokens(text: str) -> int:
    """Read a token budget: "64k" is 65,536 (k = 1024, as context windows are counted)."""
    match = _TOKENS.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a token count: {text!r} (expected e.g. 64k, 128K, 64000, 1.5k)")
    number, unit = match.groups()
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]
    whole, _, fraction = number.partition(".")
    # Exact arithmetic: 1.5k is 1536, and 1.0001k is refused rather than rounded.
    numerator = (int(whole) * 10 ** len(fraction) + int(fraction or 0)) * scale
    value, remainder = divmod(numerator, 10 ** len(fraction))
    if remainder:
        raise ValueError(f"not a whole number of tokens: {text!r}")
    if value < 1:
        raise ValueError(f"a token budget must be at least 1: {text!r}")
    return value


def parse_lengths(text: str) -> tuple[int, ...]:
    """Read one or several token budgets: `64k`, a list `32k,64k,128k`, or a range
    `32k..128k` (from the first to the last in steps of the first: 32k, 64k, 96k, 128k) or
    `32k..128k:16k` (steps of 16k). Lists and ranges combine: `8k,32k..64k:16k`."""
    sizes: list[int] = []
    for item in text.split(","):
        low, dots, rest = item.partition("..")
        if not dots:
            sizes.append(parse_tokens(item))
            continue
        high, _, step_text = rest.partition(":")
        start, stop = parse_tokens(low), parse_tokens(high)
        step = parse_tokens(step_text) if step_text else start
        if stop < start or (stop - start) % step:
            raise ValueError(
                f"range {item.strip()!r}: {stop:,} is not {start:,} plus a whole number of "
                f"steps of {step:,}"
            )
        sizes.extend(range(start, stop + 1, step))
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"--tokens {text!r} names a length twice")
    return tuple(sizes)


def parse_reach(text: str) -> tuple[int, float]:
    """Read `--min-reach`: `50%` (of each sample's token budget) or `30k` tokens; returns
    (tokens, share)."""
    value = text.strip()
    if value.endswith("%"):
        try:
            share = float(value[:-1]) / 100
        except ValueError:
            raise ValueError(f"not a share: {text!r} (expected e.g. 50%)") from None
        if not 0.0 <= share < 1.0:
            raise ValueError(f"--min-reach {text}: a share must be in [0%, 100%)")
        return 0, share
    if value in ("", "0"):
        return 0, 0.0
    return parse_tokens(value), 0.0
