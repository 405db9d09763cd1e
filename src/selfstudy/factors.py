"""The four difficulty factors of a dataset: Texture, Colour, Viewpoint, Lighting.

Each factor is off (0: easy or fixed) or on (1: varied). A dataset is named like the paper, either by
bits in TCVL order (``"0110"``) or by letters with ``-`` for off (``"-CV-"``). Both spellings are
accepted everywhere; :attr:`Factors.bits` is the canonical one.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfstudy.errors import UserError

LETTERS = "TCVL"
NAMES = ("texture", "colour", "viewpoint", "lighting")

#: The 12 datasets the paper rendered (docs/PAPER.md §2.3), in its order.
PAPER_DATASETS = ("0000", "1000", "0100", "0010", "0001", "1100",
                  "0110", "0101", "0111", "1110", "1011", "1111")


@dataclass(frozen=True)
class Factors:
    texture: bool = True
    colour: bool = True
    viewpoint: bool = True
    lighting: bool = True

    @classmethod
    def parse(cls, spec: "str | Factors") -> "Factors":
        """Parse ``"0110"``, ``"-CV-"`` or ``"TCVL"`` (case-insensitive letters)."""
        if isinstance(spec, Factors):
            return spec
        s = str(spec).strip()
        allowed = "a factor string is 4 characters in TCVL order: bits like 0110, or letters like -CV- / TCVL"
        if len(s) != 4:
            raise UserError(f"bad factor string {spec!r}: {allowed}")
        if set(s) <= {"0", "1"}:
            return cls(*(c == "1" for c in s))
        on = []
        for i, c in enumerate(s.upper()):
            if c == LETTERS[i]:
                on.append(True)
            elif c in "-0":
                on.append(False)
            else:
                raise UserError(
                    f"bad factor string {spec!r}: position {i + 1} must be {LETTERS[i]!r} or '-' ({allowed})")
        return cls(*on)

    @property
    def bits(self) -> str:
        return "".join("1" if f else "0" for f in self.as_tuple())

    @property
    def letters(self) -> str:
        return "".join(L if f else "-" for L, f in zip(LETTERS, self.as_tuple()))

    def as_tuple(self) -> tuple[bool, bool, bool, bool]:
        return (self.texture, self.colour, self.viewpoint, self.lighting)

    def __str__(self) -> str:
        return self.letters
