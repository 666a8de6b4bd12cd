"""Which instances a node classifies: a small JSON file of rules, in the spirit of MONAI
Deploy's series selector.

.. code-block:: json

    {"rules": [
      {"name": "chest-ct", "conditions": {
          "Modality": "CT",
          "BodyPartExamined": {"regex": "(?i)chest|thorax"},
          "ImageType": ["ORIGINAL", "PRIMARY"]}},
      {"name": "radiographs", "conditions": {"Modality": {"regex": "CR|DX"}}}
    ]}

A rule matches an instance when all of its conditions hold; the first matching rule selects
it. Attributes: ``Modality``, ``ImageType``, ``BodyPartExamined``, ``SOPClassUID``. A value
is matched exactly (a string), by ``re.fullmatch`` (``{"regex": "…"}``), or, for the
multi-valued ``ImageType``, as a list of values that must all be present. A series is
classified when at least one of its instances is selected (only those are classified);
otherwise it is stored and reported as not selected. No rules file: every image is selected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ATTRIBUTES = ("Modality", "ImageType", "BodyPartExamined", "SOPClassUID")


class RulesError(ValueError):
    """A rules file that cannot be used (message names the file and the problem)."""


@dataclass(frozen=True)
class Condition:
    attribute: str
    exact: str | None = None
    pattern: re.Pattern | None = None
    all_of: tuple[str, ...] = ()

    def holds(self, facts: dict[str, str]) -> bool:
        value = facts.get(self.attribute, "") or ""
        if self.all_of:
            present = {v.strip().upper() for v in value.split("\\")}
            return all(v.upper() in present for v in self.all_of)
        if self.pattern is not None:
            return self.pattern.fullmatch(value) is not None
        return value == self.exact


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]

    def matches(self, facts: dict[str, str]) -> bool:
        return all(c.holds(facts) for c in self.conditions)


class Rules:
    """An ordered list of rules; empty selects everything."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def load(cls, path: Path | None) -> Rules:
        if path is None:
            return cls([])
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise RulesError(f"{path}: rules file not found; check the path") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RulesError(f"{path}: not a JSON file ({e})") from e
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, doc, where: str = "rules") -> Rules:
        if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
            raise RulesError(f"{where}: expected {{\"rules\": [{{\"name\": …, "
                             "\"conditions\": {…}}, …]}")
        rules = []
        for i, item in enumerate(doc["rules"]):
            if not isinstance(item, dict) or not isinstance(item.get("conditions"), dict):
                raise RulesError(f"{where}: rule {i} needs a \"conditions\" object")
            name = str(item.get("name") or f"rule-{i}")
            rules.append(Rule(name, tuple(_condition(where, name, k, v)
                                          for k, v in item["conditions"].items())))
        return cls(rules)

    def select(self, facts: dict[str, str]) -> str | None:
        """The name of the first rule that matches, ``"all"`` without rules, else None."""
        if not self.rules:
            return "all"
        for rule in self.rules:
            if rule.matches(facts):
                return rule.name
        return None


def _condition(where: str, rule: str, attribute: str, value) -> Condition:
    if attribute not in ATTRIBUTES:
        raise RulesError(f"{where}: rule {rule!r}: unknown attribute {attribute!r}; use one "
                         f"of {', '.join(ATTRIBUTES)}")
    if isinstance(value, str):
        return Condition(attribute, exact=value)
    if isinstance(value, dict) and set(value) == {"regex"} and isinstance(value["regex"], str):
        try:
            return Condition(attribute, pattern=re.compile(value["regex"]))
        except re.error as e:
            raise RulesError(f"{where}: rule {rule!r}: bad regex for {attribute} ({e})") from e
    if (attribute == "ImageType" and isinstance(value, list) and value
            and all(isinstance(v, str) for v in value)):
        return Condition(attribute, all_of=tuple(value))
    raise RulesError(f"{where}: rule {rule!r}: {attribute} must be a string, "
                     "{\"regex\": \"…\"}" + (", or a list of values" if attribute == "ImageType"
                                            else ""))
