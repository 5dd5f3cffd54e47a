"""What tokens cost: a price table per model, and the process-wide meter every simulator
adds the cost of the usage it delivers to.

Money is exact: a price is kept in femto-dollars (1e-15 USD) per token, which holds any
price of up to six decimals per million tokens and its batch discount of up to three
decimals exactly, so a sum of costs never drifts. Costs are shown as USD rounded to
six decimals (:func:`usd`).

The shipped table is ``perfkit/data/prices.json``: its date, its source (Anthropic's
pricing page and model overviews, OpenAI's pricing page) and, for each model whose
price is not published, what it is assumed from. A model no row knows is priced by the
table's fallback row and listed in :attr:`Meter.unpriced` (the report names it), never
counted as free.

>>> table = price_table()
>>> usd(table.cost("claude-sonnet-5", Usage(input_tokens=1_000, output_tokens=100)))
0.003
>>> usd(table.cost("claude-sonnet-5", Usage(input_tokens=1_000), batch=True))
0.001
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

FEMTO_PER_USD = 10**15
"""The meter's unit: a femto-dollar, 1e-15 USD."""
_PER_MTOK = 10**9
"""Femto-dollars per token for one dollar per million tokens."""
MAX_PRICE = Decimal(1_000_000)
"""The largest price per million tokens a table may hold (a typo guard: 1e300 is refused)."""
FORMAT_VERSION = 1
KINDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
"""The token kinds a row prices, in dollars per million tokens."""
_ROW_KEYS = frozenset({*KINDS, "long_context", "assumed", "note"})
_LONG_KEYS = frozenset({*KINDS, "above_tokens"})
_TOP_KEYS = frozenset(
    {"perfkit_prices", "date", "unit", "source", "note", "batch_discount", "fallback", "models"}
)
_SNAPSHOT = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
"""A dated snapshot's suffix (``claude-opus-4-5-20251101``, ``gpt-4o-2024-08-06``)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one request used, by kind: uncached input, cache writes (5-minute and
    1-hour), cache reads and output."""

    input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt: what long-context pricing is decided on."""
        return (
            self.input_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
            + self.cache_read_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        # Spelled out: it runs on every simulated request (dataclasses.fields costs ~1 us).
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cache_write_5m_tokens + other.cache_write_5m_tokens,
            self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.output_tokens + other.output_tokens,
        )

    def __neg__(self) -> Usage:
        return Usage(*(-getattr(self, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Rates:
    """Femto-dollars per token of each kind."""

    input: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    output: int

    def femto(self, usage: Usage) -> int:
        return (
            self.input * usage.input_tokens
            + self.cache_write_5m * usage.cache_write_5m_tokens
            + self.cache_write_1h * usage.cache_write_1h_tokens
            + self.cache_read * usage.cache_read_tokens
            + self.output * usage.output_tokens
        )

    def per_mtok(self) -> dict[str, float]:
        """The rates as dollars per million tokens, as the pricing page shows them."""
        return {kind: getattr(self, kind) / _PER_MTOK for kind in KINDS}


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One row: the model's rates, its long-context rates above ``long_context_above``
    prompt tokens (if it has any), and why it is assumed (None when published)."""

    model: str
    rates: Rates
    long_context: Rates | None = None
    long_context_above: int = 0
    assumed: str | None = None

    def rates_for(self, usage: Usage) -> Rates:
        if self.long_context is not None and usage.prompt_tokens > self.long_context_above:
            return self.long_context
        return self.rates


class PriceTable:
    """Prices per model, a fallback row for a model no row knows, and the batch discount.

    >>> table = load_prices(None)  # the shipped table
    >>> table.price("claude-haiku-4-5-20251001").model  # a dated id finds its row
    'claude-haiku-4-5'
    >>> table.knows("claude-simulated")
    False
    """

    def __init__(
        self,
        models: Mapping[str, ModelPrice],
        *,
        fallback: ModelPrice,
        batch_discount: Decimal,
        date: str = "",
        source: str = "",
        path: str = "",
    ) -> None:
        self.models = dict(models)
        self.fallback = fallback
        self.batch_discount = batch_discount
        self._batch_keep = (1000 - int(batch_discount * 1000), 1000)
        self.date = date
        self.source = source
        self.path = path
        self._found: dict[str, ModelPrice | None] = {}
        self._fingerprint: str | None = None

    def find(self, model: str) -> ModelPrice | None:
        """The row of ``model`` (its id, or a dated snapshot of it), or None."""
        found = self._found.get(model, self)
        if found is self:
            found = self.models.get(model) or self.models.get(_SNAPSHOT.sub("", model))
            if len(self._found) < 10_000:  # names come from requests: bounded memory
                self._found[model] = found
        return found  # type: ignore[return-value]

    def knows(self, model: str) -> bool:
        return self.find(model) is not None

    def price(self, model: str) -> ModelPrice:
        """The row of ``model``, or the fallback row."""
        return self.find(model) or self.fallback

    def femto(self, model: str, usage: Usage, *, batch: bool = False) -> int:
        """The exact cost of ``usage`` on ``model``, in femto-dollars."""
        cost = self.price(model).rates_for(usage).femto(usage)
        if batch:
            keep, whole = self._batch_keep
            cost = cost * keep // whole  # exact: rates are multiples of 1,000 femto
        return cost

    def cost(self, model: str, usage: Usage, *, batch: bool = False) -> Decimal:
        """The exact cost of ``usage`` on ``model``, in dollars."""
        return Decimal(self.femto(model, usage, batch=batch)) / FEMTO_PER_USD

    @property
    def fingerprint(self) -> str:
        """What the table charges, as a short digest (two tables that price everything
        alike have the same one; a note or a path does not change it)."""
        if self._fingerprint is None:
            rows = {name: _price_row(price) for name, price in sorted(self.models.items())}
            text = json.dumps(
                [rows, _price_row(self.fallback), str(self.batch_discount)], sort_keys=True
            )
            self._fingerprint = "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        where = self.path or "shipped"
        return f"PriceTable({len(self.models)} models, date={self.date!r}, from {where})"


def _price_row(price: ModelPrice) -> list[Any]:
    long = price.long_context
    return [
        [getattr(price.rates, kind) for kind in KINDS],
        None if long is None else [getattr(long, kind) for kind in KINDS],
        price.long_context_above,
    ]


def usd(amount: Decimal | int) -> float:
    """Dollars (a Decimal, or femto-dollars as an int) as a float rounded to 6 decimals."""
    if isinstance(amount, int):
        amount = Decimal(amount) / FEMTO_PER_USD
    return float(round(amount, 6))


# -- reading a price file ------------------------------------------------------------


def load_prices(path: str | Path | None, *, base: PriceTable | None = None) -> PriceTable:
    """The shipped table (``path`` None), or a price file's rows over ``base`` (by default
    the shipped table): the file's models replace or add rows, and its ``batch_discount``
    and ``fallback``, if given, replace the base's. A bad file is a ``ValueError`` naming
    the file and the problem."""
    if path is None:
        return _shipped()
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"price file {name}: cannot be read ({error})") from None
    try:
        data = _parse(text)
    except ValueError as error:
        raise ValueError(f"price file {name}: {error}") from None
    return _table(data, name, base if base is not None else _shipped())


def _parse(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a price")

    try:
        return json.loads(text, parse_float=Decimal, parse_constant=refuse)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None


def _table(data: Any, path: str, base: PriceTable | None) -> PriceTable:
    if not isinstance(data, dict):
        raise ValueError(f"price file {path}: must be a JSON object, got {_kind(data)}")
    try:
        return _read_table(data, path, base)
    except ValueError as error:
        raise ValueError(f"price file {path}: {error}") from None


def _read_table(data: dict[str, Any], path: str, base: PriceTable | None) -> PriceTable:
    _no_unknown(data, _TOP_KEYS, "the file")
    version = data.get("perfkit_prices", FORMAT_VERSION)
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise ValueError(f"perfkit_prices: only version {FORMAT_VERSION} is known, got {version!r}")
    if "models" not in data:
        raise ValueError('"models" is missing (an object of model name -> prices)')
    models = data["models"]
    if not isinstance(models, dict):
        raise ValueError(f'"models" must be an object, got {_kind(models)}')
    rows = dict(base.models) if base is not None else {}
    rows.update({name: _row(name, row) for name, row in models.items()})
    if "fallback" in data:
        fallback = _row("fallback", data["fallback"])
    elif base is not None:
        fallback = base.fallback
    else:
        raise ValueError('"fallback" is missing (the row of a model no row knows)')
    if "batch_discount" in data:
        discount = _batch_discount(data["batch_discount"])
    elif base is not None:
        discount = base.batch_discount
    else:
        raise ValueError('"batch_discount" is missing')
    return PriceTable(
        rows,
        fallback=fallback,
        batch_discount=discount,
        date=_text(data, "date"),
        source=_text(data, "source"),
        path=path,
    )


def _row(name: object, row: Any) -> ModelPrice:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError(f"model name {name!r} must be a non-empty string of at most 200 chars")
    where = f"models.{name}" if name != "fallback" else "fallback"
    if not isinstance(row, dict):
        raise ValueError(f"{where} must be an object of prices, got {_kind(row)}")
    _no_unknown(row, _ROW_KEYS, where)
    rates = _rates(row, where)
    long_context, above = None, 0
    if "long_context" in row:
        long = row["long_context"]
        if not isinstance(long, dict):
            raise ValueError(f"{where}.long_context must be an object, got {_kind(long)}")
        _no_unknown(long, _LONG_KEYS, f"{where}.long_context")
        given = long.get("above_tokens")
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ValueError(
                f"{where}.long_context.above_tokens must be an int >= 1 (the prompt tokens "
                f"above which its rates apply), got {given!r}"
            )
        above = given
        long_context = _rates(long, f"{where}.long_context")
    assumed = row.get("assumed")
    if assumed is not None and not isinstance(assumed, str):
        raise ValueError(f"{where}.assumed must be a string saying from what, got {assumed!r}")
    return ModelPrice(name, rates, long_context, above, assumed)


def _rates(row: Mapping[str, Any], where: str) -> Rates:
    """A row's rates: input and output required; cache rates default to the pricing
    page's multipliers of the input price (1.25x, 2x, 0.1x)."""
    for required in ("input", "output"):
        if required not in row:
            raise ValueError(f'{where}: "{required}" is missing (dollars per million tokens)')
    dollars = {kind: _price(row[kind], f"{where}.{kind}") for kind in KINDS if kind in row}
    given = dollars["input"]
    defaults = {"cache_write_5m": "1.25", "cache_write_1h": "2", "cache_read": "0.1"}
    for kind, factor in defaults.items():
        dollars.setdefault(kind, given * Decimal(factor))
    return Rates(**{kind: _femto(dollars[kind], f"{where}.{kind}") for kind in KINDS})


def _price(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"{where} must be a number of dollars per million tokens, got {value!r}")
    number = Decimal(value)
    if not number.is_finite() or number < 0 or number > MAX_PRICE:
        raise ValueError(
            f"{where} must be between 0 and {MAX_PRICE:,} dollars per million tokens, got {value}"
        )
    return number


def _femto(dollars: Decimal, where: str) -> int:
    femto = dollars * _PER_MTOK
    if femto != femto.to_integral_value() or femto % 1000:
        raise ValueError(
            f"{where}: at most 6 decimals of a dollar per million tokens, got {dollars}"
        )
    return int(femto)


def _batch_discount(value: Any) -> Decimal:
    try:
        number = Decimal(value) if not isinstance(value, bool) else None
    except (InvalidOperation, TypeError):
        number = None
    if number is None or not (0 <= number < 1) or number * 1000 % 1:
        raise ValueError(
            f"batch_discount must be a fraction from 0 to below 1 with at most 3 decimals "
            f"(0.5 is 50% off), got {value!r}"
        )
    return number


def _no_unknown(data: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}"
        )


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


_SHIPPED: PriceTable | None = None
_ACTIVE: PriceTable | None = None
_TABLE_LOCK = threading.Lock()


def _shipped() -> PriceTable:
    global _SHIPPED
    if _SHIPPED is None:
        from importlib.resources import files

        text = files("perfkit").joinpath("data/prices.json").read_text(encoding="utf-8")
        _SHIPPED = _table(_parse(text), "perfkit/data/prices.json", None)
    return _SHIPPED


def price_table() -> PriceTable:
    """The prices in use in this process: the shipped table unless :func:`use_prices`
    (or ``--perfkit-prices``) set another."""
    with _TABLE_LOCK:
        return _ACTIVE if _ACTIVE is not None else _shipped()


def use_prices(prices: PriceTable | str | Path | None) -> PriceTable:
    """Price this process's simulated usage with ``prices`` (a table, or a price file read
    over the shipped table); None restores the shipped table. Returns the table."""
    global _ACTIVE
    if prices is not None and not isinstance(prices, PriceTable):
        prices = load_prices(prices)
    with _TABLE_LOCK:
        _ACTIVE = prices
    return price_table()


def prices_label() -> str | None:
    """Which prices this process's costs are made with: None for the shipped table, else
    the active table's date and fingerprint (``"2026-01-01 sha256:0123456789abcdef"``),
    which a report shows and a baseline keeps, so that costs made with other prices are
    never compared as if they were the same."""
    table = price_table()
    if table.fingerprint == _shipped().fingerprint:
        return None
    return f"{table.date or 'undated'} {table.fingerprint}"


# -- the meter -----------------------------------------------------------------------


class Meter:
    """A running total of money spent, in femto-dollars, shared by every thread; and the
    models it priced by the fallback row (with their requests), so none is silently
    free or silently guessed."""

    def __init__(self) -> None:
        self._femto = 0
        self._unpriced: dict[str, int] = {}
        self._lock = threading.Lock()

    def charge(self, model: str, usage: Usage, *, batch: bool = False) -> int:
        """Add the cost of ``usage`` on ``model`` (the active price table's) and return it."""
        table = _ACTIVE if _ACTIVE is not None else _shipped()  # one read: no lock needed
        row = table.find(model)
        cost = table.femto(model, usage, batch=batch)
        known = row is not None
        with self._lock:
            self._femto += cost
            if not known and cost > 0:
                self._unpriced[model] = self._unpriced.get(model, 0) + 1
        return cost

    def add(self, femto: int) -> None:
        with self._lock:
            self._femto += femto

    @property
    def femto(self) -> int:
        """Everything spent so far, in femto-dollars (exact)."""
        return self._femto

    @property
    def usd(self) -> float:
        return usd(self._femto)

    @property
    def unpriced(self) -> dict[str, int]:
        """Each model priced by the fallback row, and how many of its requests."""
        with self._lock:
            return dict(self._unpriced)


METER = Meter()
"""The process-wide meter every simulator adds its usage's cost to."""
