"""The simulated API's model catalog: ids, aliases and limits of the current Claude models.

Sources, cited per field:

- The models and their ids are the ``Model`` literal of the installed anthropic SDK
  (``anthropic/types/model.py``, the same list in ``model_param.py``), newest first. Where
  the SDK lists an undated alias beside a dated id (``claude-haiku-4-5`` and
  ``claude-haiku-4-5-20251001``), the dated id is the model's id and the alias resolves to
  it: the SDK repository's recorded exchanges show a request for ``claude-opus-4-5``
  answered with ``"model": "claude-opus-4-5-20251101"``
  (``tests/lib/tools/__inline_snapshot__/test_runners/TestSyncRunTools/092be1de-*.json``).
  The models the SDK lists alone (``claude-opus-4-6`` and later) have no dated snapshot:
  their id is what they are called.
- ``lifecycle`` and ``retires_at`` follow the SDK's ``anthropic/_data/deprecated_models.py``.
- ``created_at`` is the public release date where one is reported (Haiku 4.5, Opus 4.5,
  Opus 4.6, Sonnet 4.6, Opus 4.8); otherwise the Unix epoch, as
  ``ModelInfo.created_at``'s docstring allows ("May be set to an epoch value if the
  release date is unknown"). The catalog's order, not ``created_at``, is the order
  ``GET /v1/models`` lists them in ("More recently released models are listed first",
  ``anthropic/resources/models.py``).
- ``context_window`` and ``max_output_tokens``: Anthropic's models overview as quoted in
  May 2026 (Opus 4.7 1M/128k, Sonnet 4.6 1M/64k, Haiku 4.5 200k/64k; tygartmedia.com,
  "Claude Context Window Size 2026"), the Opus 4.8 launch (1M/128k; 24-ai.news,
  2026-05-28), and the 4.5 models' 200k/64k.
- ``min_cacheable_tokens``: the prompt-caching guide's table, as quoted in the SDK's issue
  anthropics/anthropic-sdk-python#1194 (4,096 for Opus 4.6, Opus 4.5 and Haiku 4.5; 1,024
  for Sonnet 4.6) and, for later models, in "Claude's prompt cache fails silently below
  1,024 tokens" (dev.to; 512 for Opus 5, Fable 5 and Mythos 5; 1,024 for Opus 4.8 and
  Sonnet 5; 2,048 for Opus 4.7).
- A figure none of these gives is assumed from the newest published model of the same
  line (said so in the table).

A model name the catalog does not know (``"claude-simulated"``) is no error for the
simulator: :func:`resolve` returns None and the simulator echoes the name as given.
"""

from __future__ import annotations

from dataclasses import dataclass

EPOCH = "1970-01-01T00:00:00Z"
"""``created_at`` of a model whose release date is not published."""


@dataclass(frozen=True)
class ModelInfo:
    """One model of the catalog, as ``GET /v1/models/{id}`` describes it."""

    id: str
    display_name: str
    created_at: str
    aliases: tuple[str, ...] = ()
    max_output_tokens: int = 64_000
    context_window: int = 200_000
    min_cacheable_tokens: int = 1_024
    line: str | None = None
    lifecycle: str = "active"
    retires_at: str | None = None

    def to_json(self) -> dict[str, object]:
        """The API's ``ModelInfo`` object (``anthropic/types/model_info.py``)."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "lifecycle": self.lifecycle,
            "deprecated_at": None,
            "retires_at": self.retires_at,
            "line": self.line,
            "max_input_tokens": self.context_window,
            "max_tokens": self.max_output_tokens,
        }


_M = 1_000_000
_LINE_OF = ("fable", "mythos", "haiku", "sonnet", "opus")

# id, display name, created_at, max_output_tokens, context_window, min_cacheable_tokens.
# The Claude 5 family is in the published tables only for its minimum cacheable lengths
# (512 tokens for Opus 5, Fable 5 and Mythos 5; 1,024 for Sonnet 5): its other limits,
# and every figure of the 5.1, 5.2 and 5.5 models, are assumed from the newest published
# model of the same line.
_TABLE: tuple[tuple[str, str, str, int, int, int], ...] = (
    ("claude-fable-5-2", "Claude Fable 5.2", EPOCH, 128_000, _M, 512),
    ("claude-mythos-5-2", "Claude Mythos 5.2", EPOCH, 128_000, _M, 512),
    ("claude-haiku-5-5", "Claude Haiku 5.5", EPOCH, 64_000, 200_000, 4_096),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5", EPOCH, 64_000, _M, 1_024),
    ("claude-fable-5-1", "Claude Fable 5.1", EPOCH, 128_000, _M, 512),
    ("claude-opus-5-5", "Claude Opus 5.5", EPOCH, 128_000, _M, 512),
    ("claude-mythos-5-1", "Claude Mythos 5.1", EPOCH, 128_000, _M, 512),
    ("claude-sonnet-5", "Claude Sonnet 5", EPOCH, 64_000, _M, 1_024),
    ("claude-fable-5", "Claude Fable 5", EPOCH, 128_000, _M, 512),
    ("claude-mythos-5", "Claude Mythos 5", EPOCH, 128_000, _M, 512),
    ("claude-opus-5", "Claude Opus 5", EPOCH, 128_000, _M, 512),
    ("claude-opus-4-8", "Claude Opus 4.8", "2026-05-28T00:00:00Z", 128_000, _M, 1_024),
    ("claude-opus-4-7", "Claude Opus 4.7", EPOCH, 128_000, _M, 2_048),
    # Limits assumed (a research preview, not in the published tables).
    ("claude-mythos-preview", "Claude Mythos Preview", EPOCH, 128_000, _M, 4_096),
    # Limits assumed as Opus 4.7's (the quoted tables no longer list Opus 4.6).
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z", 128_000, _M, 4_096),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z", 64_000, _M, 1_024),
    (
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "2025-10-15T00:00:00Z",
        64_000,
        200_000,
        4_096,
    ),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z", 64_000, 200_000, 4_096),
)
_ALIASES = {
    "claude-haiku-4-5-20251001": ("claude-haiku-4-5",),
    "claude-opus-4-5-20251101": ("claude-opus-4-5",),
}
_RETIRES_AT = {  # deprecated models (anthropic/_data/deprecated_models.py)
    "claude-mythos-preview": "2026-06-30T00:00:00Z",
    "claude-opus-4-5-20251101": "2027-01-22T00:00:00Z",
}


def _line(model_id: str) -> str | None:
    return next((line for line in _LINE_OF if f"-{line}-" in f"{model_id}-"), None)


MODELS: tuple[ModelInfo, ...] = tuple(
    ModelInfo(
        id=id_,
        display_name=name,
        created_at=created,
        aliases=_ALIASES.get(id_, ()),
        max_output_tokens=output,
        context_window=context,
        min_cacheable_tokens=cacheable,
        line=_line(id_),
        lifecycle="deprecated" if id_ in _RETIRES_AT else "active",
        retires_at=_RETIRES_AT.get(id_),
    )
    for id_, name, created, output, context, cacheable in _TABLE
)
"""The current models, newest first (the installed SDK's order)."""

_BY_NAME: dict[str, ModelInfo] = {
    name: model for model in MODELS for name in (model.id, *model.aliases)
}


def resolve(model: str) -> ModelInfo | None:
    """The catalog's model called ``model`` (its id or an alias), or None if unknown.

    >>> resolve("claude-haiku-4-5").id
    'claude-haiku-4-5-20251001'
    >>> resolve("claude-simulated") is None
    True
    """
    return _BY_NAME.get(model)


def model_id(model: str) -> str:
    """The id the API answers with for a request naming ``model``: an alias resolves to
    its dated id; a name the catalog does not know is echoed as given."""
    found = _BY_NAME.get(model)
    return found.id if found is not None else model
