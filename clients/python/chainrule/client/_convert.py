"""Keyword arguments -> proto requests, and proto responses -> typed results (shared by both clients)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeAlias

from chainrule.v1 import chainrule_pb2 as pb

from ._arrays import ColumnInput, decode_column, encode_column, is_ndarray, number
from ._models import (
    ChainRule,
    Check,
    CheckPoint,
    Column,
    Derivative,
    Evaluation,
    ExpressionError,
    Formula,
    GeneratedCode,
    Gradient,
    Jacobian,
    Limit,
    Parsed,
    Series,
    ServerInfo,
    Step,
)

# The largest order a request can carry (a uint32 field; the server's limit is far below it).
_MAX_ORDER = 2**32 - 1
# `"x"`, `{"x": 2, "y": 1}`, `[("x", 2), ("y", 1)]` or `["x", "y"]`: the variables, each with its order.
WrtSpec: TypeAlias = str | Mapping[str, int] | Sequence[tuple[str, int] | str] | None
SimplificationName: TypeAlias = Literal["none", "fast", "full"]
# Output formats besides text: "latex", "mathml", and code in "python", "c" or "javascript".
FormatName: TypeAlias = Literal["latex", "mathml", "python", "c", "javascript"]
Point: TypeAlias = Mapping[str, float]
Points: TypeAlias = Mapping[str, ColumnInput]

_SIMPLIFICATIONS: Mapping[str, pb.Simplification.ValueType] = {
    "none": pb.SIMPLIFICATION_NONE,
    "fast": pb.SIMPLIFICATION_FAST,
    "full": pb.SIMPLIFICATION_FULL,
}


_FORMAT_VALUES: Mapping[str, pb.OutputFormat.ValueType] = {
    "latex": pb.OUTPUT_FORMAT_LATEX,
    "mathml": pb.OUTPUT_FORMAT_MATHML,
    "python": pb.OUTPUT_FORMAT_PYTHON,
    "c": pb.OUTPUT_FORMAT_C,
    "javascript": pb.OUTPUT_FORMAT_JAVASCRIPT,
}
_FORMAT_NAMES: Mapping[int, str] = {
    v.number: v.name.removeprefix("OUTPUT_FORMAT_").lower() for v in pb.OutputFormat.DESCRIPTOR.values
}


def wrt_messages(wrt: WrtSpec) -> list[pb.Wrt]:
    """Normalise the ways of naming variables and orders into `Wrt` messages."""
    if wrt is None:
        return []
    if isinstance(wrt, str):
        return [pb.Wrt(variable=wrt, order=1)]
    items: Iterable[tuple[str, int] | str] = wrt.items() if isinstance(wrt, Mapping) else wrt
    found = []
    for item in items:
        variable, order = (item, 1) if isinstance(item, str) else item
        if not isinstance(variable, str) or isinstance(order, bool) or not isinstance(order, int):
            raise TypeError(f"wrt entries are (variable: str, order: int), got {item!r}")
        if not 0 <= order <= _MAX_ORDER:
            raise ValueError(f"the order for {variable!r} must be 0..{_MAX_ORDER}, got {order}")
        found.append(pb.Wrt(variable=variable, order=order))
    return found


def differentiate_request(
    expression: str,
    wrt: WrtSpec,
    simplification: SimplificationName,
    latex: bool,
    *,
    explain: bool = False,
    verify: bool = False,
    formats: Sequence[FormatName] = (),
    dependent: str | None = None,
) -> pb.DifferentiateRequest:
    """The DifferentiateRequest for `Client.differentiate`."""
    if simplification not in _SIMPLIFICATIONS:
        raise ValueError(f"simplification must be one of {sorted(_SIMPLIFICATIONS)}, got {simplification!r}")
    if isinstance(formats, str):
        formats = [formats]  # type: ignore[list-item]  # a single name where a list was meant
    unknown = [name for name in formats if name not in _FORMAT_VALUES]
    if unknown:
        raise ValueError(f"formats must be among {sorted(_FORMAT_VALUES)}, got {unknown!r}")
    wanted: list[str] = [*(["latex"] if latex else []), *formats]
    return pb.DifferentiateRequest(
        expression=expression,
        wrt=wrt_messages(wrt),
        simplification=_SIMPLIFICATIONS[simplification],
        formats=list(dict.fromkeys(_FORMAT_VALUES[name] for name in wanted)),
        explain=explain,
        verify=verify,
        dependent=dependent or "",
    )


def _point(point: Point | None) -> dict[str, float]:
    return {name: number(value, f"point[{name!r}]") for name, value in (point or {}).items()}


def _points(points: Points | None) -> dict[str, pb.Array]:
    return {name: encode_column(column, name) for name, column in (points or {}).items()}


def wants_numpy(points: Points | None) -> bool:
    """Replies come back as numpy arrays exactly when some input column was one."""
    return any(is_ndarray(column) for column in (points or {}).values())


def evaluate_request(
    expression: str, point: Point | None, points: Points | None, wrt: WrtSpec, dependent: str | None = None
) -> pb.EvaluateRequest:
    """The EvaluateRequest for `Client.evaluate`."""
    return pb.EvaluateRequest(
        expression=expression,
        point=_point(point),
        points=_points(points),
        wrt=wrt_messages(wrt),
        dependent=dependent or "",
    )


def gradient_request(
    expression: str,
    point: Point | None,
    points: Points | None,
    variables: Sequence[str] | None,
    hessian: bool,
) -> pb.GradientAtPointRequest:
    """The GradientAtPointRequest for `Client.gradient`."""
    if isinstance(variables, str):
        raise TypeError("variables must be a sequence of names, e.g. ['x', 'y'], not a string")
    return pb.GradientAtPointRequest(
        expression=expression,
        variables=list(variables or ()),
        point=_point(point),
        points=_points(points),
        hessian=hessian,
    )


def _names(names: Sequence[str] | None, what: str) -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"{what} must be a sequence, e.g. ['x', 'y'], not a string")
    return list(names or ())


def jacobian_request(
    expressions: Sequence[str], point: Point | None, points: Points | None, variables: Sequence[str] | None
) -> pb.JacobianRequest:
    """The JacobianRequest for `Client.jacobian`."""
    return pb.JacobianRequest(
        expressions=_names(expressions, "expressions"),
        variables=_names(variables, "variables"),
        point=_point(point),
        points=_points(points),
    )


def _around_text(around: str | float) -> str:
    """A number as its exact text: repr of a numpy float is "np.float64(0.5)", which the server read
    as a call (an independent tester); NaN and infinities are no point to expand around."""
    if isinstance(around, str):
        return around
    if isinstance(around, int):
        try:
            return str(int(around))
        except ValueError:  # past the interpreter's 4,300 digits
            raise ValueError("around has too many digits to send as a number: send its text") from None
    value = float(around)
    if not math.isfinite(value):
        raise ValueError(f"around must be a finite number, not {value!r}")
    return repr(value)


def series_request(
    expression: str, variable: str | None, around: str | float, order: int | None, latex: bool
) -> pb.SeriesRequest:
    """The SeriesRequest for `Client.series`; `around` may be a number (sent as its exact text)."""
    if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        raise TypeError(f"order must be a whole number or None, not {type(order).__name__} {order!r}")
    if order is not None and not 0 <= order <= _MAX_ORDER:
        raise ValueError(f"order must be 0..{_MAX_ORDER}, got {order}")
    if isinstance(around, bool) or not isinstance(around, str | int | float):
        raise TypeError(f"around must be a constant's text or a number, not {type(around).__name__}")
    request = pb.SeriesRequest(
        expression=expression,
        variable=variable or "",
        around=_around_text(around),
        formats=[pb.OUTPUT_FORMAT_LATEX] if latex else [],
    )
    if order is not None:
        request.order = order
    return request


def derivative(response: pb.DifferentiateResponse, latex: bool, mathml: bool = False) -> Derivative:
    """The `Derivative` a DifferentiateResponse carries."""
    return Derivative(
        derivative=response.derivative,
        latex=response.latex if latex else None,
        variables=tuple(response.variables),
        steps=tuple(_step(step) for step in response.steps),
        check=_check(response.check) if response.HasField("check") else None,
        mathml=response.mathml if mathml else None,
        code=tuple(
            GeneratedCode(
                format=_FORMAT_NAMES.get(code.format, str(code.format)),
                source=code.source,
                function_name=code.function_name,
                parameters=tuple(code.parameters),
            )
            for code in response.code
        ),
    )


def _formula(message: pb.Formula) -> Formula:
    return Formula(message.text, message.latex)


def _rule(value: pb.Step.Rule.ValueType) -> str:
    return pb.Step.Rule.Name(value).removeprefix("RULE_").lower() if value in _RULES else str(value)


_RULES = frozenset(pb.Step.Rule.values())


def _step(message: pb.Step) -> Step:
    chain = None
    if message.HasField("chain"):
        c = message.chain
        chain = ChainRule(
            outer_rule=_rule(c.outer_rule),
            outer=_formula(c.outer),
            inner=_formula(c.inner),
            outer_derivative_of_u=_formula(c.outer_derivative_of_u),
            outer_derivative=_formula(c.outer_derivative),
            inner_derivative=_formula(c.inner_derivative),
            product=_formula(c.product),
            factors=tuple(_formula(factor) for factor in c.factors),
        )
    return Step(
        rule=_rule(message.rule),
        variable=message.variable,
        order=message.order,
        expression=_formula(message.expression),
        result=_formula(message.result),
        depends_on=tuple(message.depends_on),
        description=message.description,
        chain=chain,
    )


def _check(message: pb.Check) -> Check:
    return Check(
        verdict=pb.Check.Verdict.Name(message.verdict).removeprefix("VERDICT_").lower(),
        method=pb.Check.Method.Name(message.method).removeprefix("METHOD_").lower(),
        max_relative_error=message.max_relative_error,
        tolerance=message.tolerance,
        points=tuple(
            CheckPoint(dict(point.point), point.symbolic, point.numeric, point.relative_error)
            for point in message.points
        ),
    )


def evaluation(response: pb.EvaluateResponse, as_numpy: bool) -> Evaluation:
    """The `Evaluation` an EvaluateResponse carries."""
    return Evaluation(
        value=response.value if response.HasField("value") else None,
        values=decode_column(response.values, as_numpy=as_numpy) if response.HasField("values") else None,
        nonfinite_count=response.nonfinite_count,
    )


def _square(items: Sequence[Column], n: int) -> tuple[tuple[Column, ...], ...]:
    return tuple(tuple(items[row * n : (row + 1) * n]) for row in range(n))


def gradient(response: pb.GradientAtPointResponse, as_numpy: bool, hessian: bool) -> Gradient:
    """The `Gradient` a GradientAtPointResponse carries (one point or many)."""
    variables = tuple(response.variables)
    n = len(variables)
    if response.HasField("values"):
        columns = [decode_column(c, as_numpy=as_numpy) for c in response.gradients]
        hessians = [decode_column(c, as_numpy=as_numpy) for c in response.hessians]
        return Gradient(
            variables=variables,
            nonfinite_count=response.nonfinite_count,
            values=decode_column(response.values, as_numpy=as_numpy),
            gradients=tuple(columns),
            hessians=_square(hessians, n) if hessian else None,
        )
    rows = list(response.hessian)
    return Gradient(
        variables=variables,
        nonfinite_count=response.nonfinite_count,
        value=response.value if response.HasField("value") else None,
        gradient=tuple(response.gradient),
        hessian=tuple(tuple(rows[r * n : (r + 1) * n]) for r in range(n)) if hessian else None,
    )


def jacobian(response: pb.JacobianResponse, as_numpy: bool) -> Jacobian:
    """The `Jacobian` a JacobianResponse carries (one point or many)."""
    variables = tuple(response.variables)
    n = len(variables)
    if response.value_arrays:
        columns = [decode_column(c, as_numpy=as_numpy) for c in response.jacobian_arrays]
        return Jacobian(
            variables=variables,
            nonfinite_count=response.nonfinite_count,
            value_arrays=tuple(decode_column(c, as_numpy=as_numpy) for c in response.value_arrays),
            jacobian_arrays=tuple(
                tuple(columns[r * n : (r + 1) * n]) for r in range(len(response.value_arrays))
            ),
        )
    entries = list(response.jacobian)
    return Jacobian(
        variables=variables,
        nonfinite_count=response.nonfinite_count,
        values=tuple(response.values),
        jacobian=tuple(tuple(entries[r * n : (r + 1) * n]) for r in range(len(response.values))),
    )


def series(response: pb.SeriesResponse, latex: bool) -> Series:
    """The `Series` a SeriesResponse carries."""
    return Series(
        series=response.series,
        variable=response.variable,
        coefficients=tuple(response.coefficients),
        remainder=response.remainder,
        latex=response.latex if latex else None,
    )


def _enum_names(values: Iterable[int], prefix: str, names: Mapping[int, str]) -> tuple[str, ...]:
    return tuple(names[v].removeprefix(prefix).lower() for v in values if v in names)


def parsed(response: pb.ParseResponse) -> Parsed:
    """The `Parsed` a ParseResponse carries: the reading, or the error with its position."""
    if not response.HasField("error"):
        return Parsed(response.canonical, response.latex, tuple(response.variables))
    error = response.error
    position = error.position if error.HasField("position") else None
    return Parsed("", "", (), ExpressionError(error.reason, error.message, position, dict(error.metadata)))


def server_info(response: pb.GetServerInfoResponse) -> ServerInfo:
    """The `ServerInfo` a GetServerInfoResponse carries; enum values become lower-case names."""
    formats = {v.number: v.name for v in pb.OutputFormat.DESCRIPTOR.values if v.number}
    modes = {v.number: v.name for v in pb.Simplification.DESCRIPTOR.values if v.number}
    return ServerInfo(
        version=response.version,
        limits=tuple(Limit(lim.name, lim.maximum, lim.description) for lim in response.limits),
        functions=tuple(response.functions),
        constants=tuple(response.constants),
        output_formats=_enum_names(response.output_formats, "OUTPUT_FORMAT_", formats),
        simplifications=_enum_names(response.simplifications, "SIMPLIFICATION_", modes),
        format_support={
            _FORMAT_NAMES.get(entry.format, str(entry.format)): tuple(entry.functions)
            for entry in response.format_support
        },
    )
