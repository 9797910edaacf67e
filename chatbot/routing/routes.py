"""Routes as data: the intents loaded from intents.yaml and the router's answer for one message."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from common.errors import ConfigurationError

UNKNOWN = "unknown"
DEFAULT_TEMPLATE = "general"
TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_-]*")
TOP_K = 5


@dataclass
class Route:
    """One intent: what it means, how customers say it, and the prompt template it selects."""

    name: str
    description: str = ""
    category: str = ""
    utterances: list[str] = field(default_factory=list)
    template: str = DEFAULT_TEMPLATE
    escalate: bool = False
    # Whether its messages set the topic a short follow-up refers back to ("hi" does not).
    topic: bool = True


@dataclass
class RouteChoice:
    """The router's answer: the intent ("unknown" when it abstains) with the top scores behind it."""

    intent: str
    confidence: float
    scores: list[tuple[str, float]]
    abstained: bool
    template: str = DEFAULT_TEMPLATE
    escalate: bool = False
    source: str = "router"  # "router", "llm" or "follow-up"
    reasoning: str = ""

    def to_dict(self) -> dict:
        """A JSON-ready dict for the turn's stored metadata."""
        data = asdict(self)
        data["confidence"] = round(float(self.confidence), 4)
        data["scores"] = [[name, round(float(score), 4)] for name, score in self.scores]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RouteChoice":
        """The inverse of `to_dict`."""
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        values["scores"] = [(str(name), float(score)) for name, score in values.get("scores", [])]
        return cls(**values)


def load_routes(path: str | Path) -> list[Route]:
    """Read and validate a YAML file of intents (a list, or a mapping with an `intents` list)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read intents file {path}: {exc}") from exc
    items = data.get("intents") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ConfigurationError(f"{path}: expected a non-empty list of intents")
    routes, seen = [], set()
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or not item.get("name"):
            raise ConfigurationError(f"{path}: intent #{number} has no name")
        name = str(item["name"])
        if name in seen or name == UNKNOWN:
            raise ConfigurationError(f"{path}: intent name {name!r} is duplicated or reserved")
        seen.add(name)
        utterances = [str(u).strip() for u in item.get("utterances") or [] if str(u).strip()]
        if len(utterances) < 2:
            raise ConfigurationError(f"{path}: intent {name!r} needs at least two utterances")
        template = str(item.get("template") or DEFAULT_TEMPLATE)
        if not TEMPLATE_NAME.fullmatch(template):
            raise ConfigurationError(f"{path}: intent {name!r} has an invalid template name {template!r}")
        routes.append(
            Route(
                name=name,
                description=str(item.get("description") or ""),
                category=str(item.get("category") or name),
                utterances=utterances,
                template=template,
                escalate=bool(item.get("escalate", False)),
                topic=bool(item.get("topic", True)),
            )
        )
    return routes


def default_routes_path() -> Path:
    """The shipped customer-support taxonomy."""
    return Path(__file__).with_name("intents.yaml")
