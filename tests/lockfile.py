"""requirements.lock read as pip reads it: one pinned requirement per logical line (backslash
continuations joined, comments dropped), each with its --hash options. Used by tests/test_lock.py
and tests/test_docker.py."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Locked:
    name: str  # canonical (PEP 503) name
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def version(self) -> str:
        (spec,) = self.requirement.specifier
        return spec.version


def logical_lines(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    lines = (line.split("#", 1)[0].strip() for line in joined.splitlines())
    return [line for line in lines if line]


def read_lock(path: Path = LOCK) -> dict[str, Locked]:
    """Canonical name -> its pinned requirement and hashes."""
    locked: dict[str, Locked] = {}
    for line in logical_lines(path.read_text()):
        requirement_text, _, options = line.partition(" --hash=")
        requirement = Requirement(requirement_text.strip())
        name = canonicalize_name(requirement.name)
        assert name not in locked, f"{name} locked twice"
        locked[name] = Locked(name, requirement, tuple(HASH.findall("--hash=" + options)))
    return locked
