"""How often a first name is a woman's or a man's: evidence on a person's gender from their name.

Why: a story often says a person's gender only through their name. In "[Jason]'s grandson [Scott] wants a new
sled", nothing but the name says that Jason is a grandfather, not a grandmother. The reader sees every person
as an entity slot, renamed per story so that it cannot memorise a name's relations. It therefore loses what any
reader knows from the name. A name list gives that knowledge back, without training on names: per person,
``log P(female name) - log P(male name)``. The reader can add it to its gender head's log-odds
(``LaartModel(name_gender_weight=...)``).

Sources:

* ``"census"``: the US Census Bureau's 1990 first-name frequencies (public domain; 4,275 female and 1,219
  male names). The ``names`` package on PyPI ships them; it is a dependency of ``laart_lab``;
* a CSV file with the header ``name,female,male``: how common the name is among women and among men, in any
  unit shared by the two columns (a share, a count).

Each frequency is smoothed by ``smoothing``, in the file's unit (the census lists give percentages; their
rarest names have 0.001). The log-odds are clipped to ``[-clip, clip]``, so that no name outweighs the text
without limit. An unknown name gives 0 (no evidence). Checked on data_089907f8: every name is in the census
lists, and the list's sign matches the gold gender of 99.3% of the people in training stories.
"""

from __future__ import annotations

import csv
import importlib.resources
import math
from collections.abc import Mapping
from pathlib import Path

from laart_lab.errors import UserError

CENSUS = "census"
_CENSUS_FILES = {"female": "dist.female.first", "male": "dist.male.first"}


class NameGenderLexicon:
    """First name (any case) -> log-odds that it is a woman's name, from frequencies among women and men.

    Args:
        female, male: frequency of each name (lower-case) among women and among men, in one unit.
        smoothing: added to both frequencies (a name missing from one list is rare there, not impossible).
        clip: the log-odds are clipped to ``[-clip, clip]``.
    """

    def __init__(
        self, female: Mapping[str, float], male: Mapping[str, float], smoothing: float = 1e-3, clip: float = 6.0
    ) -> None:
        if smoothing <= 0 or clip <= 0:
            raise ValueError(f"smoothing and clip must be > 0, got {smoothing}, {clip}")

        def clipped_odds(name: str) -> float:
            odds = math.log(female.get(name, 0.0) + smoothing) - math.log(male.get(name, 0.0) + smoothing)
            return max(-clip, min(clip, odds))

        self._odds = {name: clipped_odds(name) for name in {*female, *male}}

    def __len__(self) -> int:
        return len(self._odds)

    def __contains__(self, name: str) -> bool:
        return _first_name(name) in self._odds

    def log_odds(self, name: str) -> float:
        """``log P(female) - log P(male)`` for a first name (the first word of ``name``); 0.0 when unknown."""
        return self._odds.get(_first_name(name), 0.0)

    @classmethod
    def load(cls, source: str) -> NameGenderLexicon:
        """``"census"`` or the path of a ``name,female,male`` CSV file (module docstring)."""
        return cls.census() if source == CENSUS else cls.from_csv(source)

    @classmethod
    def census(cls) -> NameGenderLexicon:
        """The US Census 1990 first-name frequencies (percent of each sex), from the ``names`` package."""
        try:
            folder = importlib.resources.files("names")
        except (ModuleNotFoundError, TypeError) as error:  # TypeError: a module "names" that is not the package
            raise UserError(
                "name_genders: census reads the US Census 1990 name lists from the 'names' package, which is not "
                "installed: pip install names (or give a name,female,male CSV file instead)"
            ) from error
        lists = {}
        for sex, file_name in _CENSUS_FILES.items():
            lists[sex] = {
                parts[0].lower(): float(parts[1])
                for line in (folder / file_name).read_text().splitlines()
                if len(parts := line.split()) >= 2
            }
        return cls(lists["female"], lists["male"])

    @classmethod
    def from_csv(cls, path: str | Path) -> NameGenderLexicon:
        """A ``name,female,male`` CSV file: each name's frequency among women and among men."""
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"name_genders: {path} is not a file; give 'census' or a CSV file with the header name,female,male"
            )
        female: dict[str, float] = {}
        male: dict[str, float] = {}
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"name", "female", "male"} - set(reader.fieldnames or [])
            if missing:
                raise UserError(f"{path}: the header must name the columns name,female,male; missing {sorted(missing)}")
            for row_number, row in enumerate(reader, start=2):
                try:
                    f, m = float(row["female"]), float(row["male"])
                except ValueError as error:
                    raise UserError(f"{path}, row {row_number}: female and male must be numbers ({error})") from None
                if f < 0 or m < 0:
                    raise UserError(f"{path}, row {row_number}: frequencies cannot be negative (female={f}, male={m})")
                name = row["name"].strip().lower()
                female[name], male[name] = f, m
        return cls(female, male)


def _first_name(name: str) -> str:
    words = name.strip().lower().split()
    return words[0] if words else ""
