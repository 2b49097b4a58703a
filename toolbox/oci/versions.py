"""Versions in a recipe's tag scheme, and which one is newest: what `toolbox outdated` reports.

The rule, for a pinned version and the tags of the recipe's repository:
- A tag is in the scheme when the recipe's `tag` template makes it from some version:
  "{version}-slim" makes "3.13-slim" from "3.13"; "3.13-slim-bookworm" and "latest" are not made
  by it, and are not looked at.
- A version is *numbered*: numbers separated by dots ("3", "3.13", "1.7.1"), maybe after a "v",
  maybe followed by a pre-release marker — dev, alpha or a, beta or b, pre or preview, rc — with
  or without a separator and a number ("3.13-rc1", "3.13.0rc1", "2.0.0-beta.2"). Anything else
  ("22.04-bookworm", "1.7.1-r2", "latest") is not compared with anything.
- Numbered versions are ordered by their numbers, as numbers (3.9 < 3.10 < 3.13), and a
  pre-release comes before the release it leads to (3.13-rc1 < 3.13), pre-releases by their kind
  (dev < alpha < beta < pre < rc), then their number.
- The newest version the scheme allows for a pin has as many numbers as the pin, and its "v"
  if it has one: a pin of "3.12" (a minor line, whose tag gets patch releases) is compared with
  "3.13", not "3.13.1" or "3"; "1.7.1" with "1.7.2" and "1.8.0". So the suggestion keeps the
  pin's precision.
- Pre-releases are candidates only when the pin is one: a pin of "3.13" is never told to move
  to "3.14-rc1"; a pin of "3.14-rc1" is told about "3.14-rc2" and "3.14".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_NUMBERED = re.compile(r"(v?)(\d+(?:\.\d+)*)(?:[-.]?(dev|alpha|a|beta|b|pre|preview|rc)[-.]?(\d*))?\Z",
                       re.IGNORECASE)
_PRE_RANK = {"dev": 0, "alpha": 1, "a": 1, "beta": 2, "b": 2, "pre": 3, "preview": 3, "rc": 4}
_VERSION_TEXT = r"[A-Za-z0-9][A-Za-z0-9._+-]*"


@dataclass(frozen=True, order=True)
class Version:
    """A numbered version, ordered as the module says (`key` first, so `<` compares versions)."""

    key: tuple
    text: str
    prefix: str  # "v" or ""
    numbers: tuple
    pre_release: bool


def parse_version(text: str) -> Version | None:
    """The Version of `text`, or None when it is not numbered."""
    match = _NUMBERED.match(text)
    if match is None:
        return None
    prefix, numbers, kind, number = match.groups()
    numbers = tuple(int(n) for n in numbers.split("."))
    if kind is None:
        key = (numbers, 1, 0, 0)  # a release sorts after every pre-release of the same numbers
    else:
        key = (numbers, 0, _PRE_RANK[kind.lower()], int(number or 0))
    return Version(key, text, prefix.lower(), numbers, kind is not None)


def tag_pattern(template: str) -> re.Pattern[str] | None:
    """A regex matching the tags `template` makes ("{version}-slim"), whose group `version` is
    the version; None when the template does not depend on the version."""
    if "{version}" not in template:
        return None
    parts = template.split("{version}")
    pattern = re.escape(parts[0]) + f"(?P<version>{_VERSION_TEXT})"
    for part in parts[1:-1]:
        pattern += re.escape(part) + "(?P=version)"
    return re.compile(pattern + re.escape(parts[-1]) + r"\Z")


def versions_in(template: str, tags: Iterable[str]) -> dict[str, str]:
    """{version text: tag} of the tags `template` makes."""
    pattern = tag_pattern(template)
    found = {}
    for tag in tags:
        match = pattern.match(tag) if pattern else None
        if match:
            found.setdefault(match.group("version"), tag)
    return found


def newest(pinned: str, versions: Iterable[str]) -> Version | None:
    """The newest of `versions` (texts) that the rule allows for the pin `pinned`: a Version,
    the pinned one itself when nothing is newer (if it is among them). None when `pinned` is not
    numbered, or nothing of its shape is there."""
    pin = parse_version(pinned)
    if pin is None:
        return None
    candidates = [v for v in (parse_version(text) for text in versions) if v is not None]
    candidates = [v for v in candidates if v.prefix == pin.prefix and len(v.numbers) == len(pin.numbers)
                  and (pin.pre_release or not v.pre_release)]
    return max(candidates, default=None)


def is_newer(candidate: Version | None, pinned: str) -> bool:
    """Whether the Version `candidate` comes after the version text `pinned`."""
    pin = parse_version(pinned)
    return candidate is not None and pin is not None and candidate.key > pin.key
