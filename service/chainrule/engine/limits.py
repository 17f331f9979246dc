"""Every limit the engine enforces, declared once: its name, default, unit, description and layer.

A limit is a field of `ParseLimits` (checked by the parser, before sympy builds anything) or of
`EngineLimits` (checked by differentiation and numeric evaluation), declared with `limit(...)`. Everything
else derives from these declarations: the server's settings (`CHAINRULE_MAX_<NAME>`, see
`server/config.py`), the limits GetServerInfo reports, and the limits table in docs/operations.md.
The server adds limits of its own (request bytes, budgets) in the same form (`Limit`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from chainrule.engine.errors import LimitExceeded

_LIMIT = "limit"


class Layer(enum.Enum):
    """Where a limit is checked: in the parser, in the engine, or by the server around it."""

    PARSER = "parser"
    ENGINE = "engine"
    SERVER = "server"


@dataclass(frozen=True)
class Limit:
    """One declared limit. `name` is what GetServerInfo reports; the setting is `setting`."""

    name: str
    default: int | float
    unit: str
    description: str
    layer: Layer
    setting: str = ""

    def __post_init__(self) -> None:
        if not self.setting:
            object.__setattr__(self, "setting", f"max_{self.name}")


def limit(name: str, default: int, unit: str, description: str, layer: Layer = Layer.ENGINE) -> Any:
    """A dataclass field that is a declared limit (the field's default is the limit's default)."""
    return field(default=default, metadata={_LIMIT: Limit(name, default, unit, description, layer)})


@dataclass(frozen=True)
class ParseLimits:
    """Limits checked while parsing, before (or instead of) any expensive sympy work."""

    max_length: int = limit(
        "expression_length", 10_000, "code points", "code points in an expression", Layer.PARSER
    )
    max_nodes: int = limit("parse_nodes", 5_000, "nodes", "nodes in an expression's parse tree", Layer.PARSER)
    # Parentheses, unary chains, power towers and calls all nest.
    max_depth: int = limit("parse_depth", 100, "levels", "nesting depth of an expression", Layer.PARSER)
    max_integer_digits: int = limit(
        "integer_digits", 1_000, "digits", "digits in one integer literal", Layer.PARSER
    )
    # e*log2|b| for an exact power b^e, estimated before sympy computes it; an exponential (exp,
    # sinh..., b^e) of a number past the largest double is past it too, whatever its exponent.
    max_power_bits: int = limit(
        "power_bits",
        20_000,
        "bits",
        "size of a number computed while parsing (powers, products, exponentials)",
        Layer.PARSER,
    )
    max_factorial_argument: int = limit(
        "factorial_argument",
        1_000,
        "",
        "largest number given to factorial, gamma and their family",
        Layer.PARSER,
    )
    max_variables: int = limit("variables", 32, "variables", "distinct variables in a request", Layer.PARSER)
    # 2^2^2^2 is three; sympy slows sharply beyond a few.
    max_exponent_depth: int = limit(
        "exponent_depth", 8, "levels", "exponents nested in a power tower", Layer.PARSER
    )
    # sympy searches for an exact root of a number under a fractional power.
    max_root_bits: int = limit(
        "root_bits", 1_024, "bits", "bits of a number under an exact root", Layer.PARSER
    )
    # An exact root of a number is an algebraic number of that degree; where sympy cannot tell its
    # sign by evaluating it (floor(3^(1e-200) - 1)) it builds its minimal polynomial, of that degree.
    max_root_degree: int = limit(
        "root_degree",
        1_000,
        "",
        "degree of an exact root of a number (n of root(a, n), q of a^(p/q))",
        Layer.PARSER,
    )


@dataclass(frozen=True)
class EngineLimits:
    """Bounds on engine work; each one fails with `LimitExceeded` naming it."""

    max_derivative_order: int = limit("derivative_order", 20, "", "total order of a derivative")
    max_derivative_nodes: int = limit("derivative_nodes", 50_000, "nodes", "size of a derivative")
    max_points: int = limit(
        "points", 2_000_000, "points", "points in one Evaluate, GradientAtPoint or Jacobian request"
    )
    max_numeric_cost: int = limit(
        "numeric_cost",
        2_000_000_000,
        "",
        "operations of the compiled code (every output; slow functions weighted) and of writing the "
        "reply, times points",
    )
    # What a compiled Evaluate, GradientAtPoint or Jacobian plan keeps in the caches, generated in a
    # worker.
    max_code_bytes: int = limit(
        "code_bytes", 1_048_576, "bytes", "size of one compiled numeric function's code (marshalled)"
    )
    max_series_order: int = limit("series_order", 20, "", "degree of a Taylor polynomial")
    max_jacobian_rows: int = limit("jacobian_rows", 64, "expressions", "expressions in one Jacobian request")


def declared(limits: type[Any] | Any) -> Iterator[tuple[str, Limit]]:
    """(field name, declaration) of every limit field of a limits dataclass (or instance)."""
    for item in dataclasses.fields(limits):
        declaration = item.metadata.get(_LIMIT)
        if isinstance(declaration, Limit):
            yield item.name, declaration


ENGINE_LIMITS: tuple[Limit, ...] = tuple(
    declaration for cls in (ParseLimits, EngineLimits) for _, declaration in declared(cls)
)


def exceeded(
    limits: Any,
    setting: str,
    value: float | int,
    *,
    field: str,
    what: str,
    about: bool = False,
    position: int | None = None,
    hint: str = "",
) -> LimitExceeded:
    """The error for `value` over the limit `setting` of `limits`, named and counted as declared."""
    declaration = next(found for name, found in declared(limits) if name == setting)
    return LimitExceeded(
        declaration.name,
        value,
        getattr(limits, setting),
        field=field,
        what=what,
        unit=declaration.unit,
        about=about,
        position=position,
        hint=hint,
    )
