"""Real-valued evaluation with mpmath at a chosen precision: the value every float64 result is held to.

Three users: numeric compilation folds constant subexpressions with it (so `log(10^400)` is 921.03...,
not log(inf)); the kernels of functions scipy lacks (derivatives without a closed form, polygamma of a
fractional order, Hurwitz zeta left of 1) call it point by point; and the differential fuzzer and the
accuracy table compare float64 results with it.

The real-valued rule: an intermediate value that is not real (log(-1), sqrt(-2), asin(2)) makes the
result NaN, never a real part. With `strict=False` the evaluation continues in the complex plane instead,
which tells an identity sympy applied when it built the expression (sin(asin(x)) is x) from an error.

Every mpmath call is bounded: arguments beyond the ranges where mpmath is known to answer quickly give
what float64 would (+-inf, 0) or NaN, and the functions whose mpmath cost grows with the argument
(polygamma and Hurwitz zeta left of 0) use reflection formulas here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mpmath
import sympy

__all__ = [
    "Unsupported",
    "at",
    "context",
    "cot_derivative_polynomial",
    "derivative_call",
    "evaluate",
    "kernel_name",
    "near_integer",
    "nearest_double",
    "partial",
    "to_double",
]

Value = Any  # an mpf, or an mpc when strict=False

# Magnitudes (in bits of the binary exponent) beyond which a function's argument is not worth
# evaluating exactly: exp(2^64) already has 2^64 bits of exponent, far past any double.
_EXP_BITS = 64
PERIODIC_BITS = 4096
_SPECIAL_BITS = 1100
_MAX_ORDER = 1000  # polygamma orders beyond this overflow every double: NaN
_MIN_ZETA_S = -400  # Hurwitz zeta left of this is beyond every double: NaN
_MAX_ZETA_TERMS = 512  # the terms added when shifting the Hurwitz parameter a into (0, 1]

_local = threading.local()


class Unsupported(Exception):
    """An expression node this evaluator does not know (the caller decides what to do)."""


def context(prec: int) -> mpmath.ctx_mp.MPContext:
    """This thread's own mpmath context at `prec` bits: mpmath's global one is shared by every thread.

    One per precision, never re-set: an evaluation at 64 bits started inside one at 200 (a kernel
    inside a test, numerical differentiation inside a derivative) leaves the outer one's as it was.
    """
    contexts: dict[int, Any] | None = getattr(_local, "contexts", None)
    if contexts is None:
        contexts = _local.contexts = {}
    ctx = contexts.get(prec)
    if ctx is None:
        ctx = contexts[prec] = mpmath.MPContext()
        ctx.prec = prec
    return ctx


def to_double(number: sympy.Expr) -> float:
    """An exact sympy number as the nearest double: +-inf past the largest, 0 (signed) past the smallest.

    Python's int / int division is correctly rounded, and so is mpmath's mpf -> float.
    """
    if number.is_Integer:
        value = int(number)
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if number.is_Rational:
        p, q = int(number.p), int(number.q)
        try:
            return p / q
        except OverflowError:
            return math.inf if p > 0 else -math.inf
    if number.is_Float:
        return float(mpmath.mpf(number._mpf_))
    raise TypeError(f"not an exact number: {number!r}")


def evaluate(
    expr: sympy.Basic,
    values: Mapping[str, Any] | None = None,
    *,
    prec: int = 80,
    strict: bool = True,
    each: Callable[[Value], Value] | None = None,
) -> Value:
    """The value of `expr` with its symbols set from `values` (by name), at `prec` bits.

    `each` maps every node's value before its parent uses it: rounding each to a double simulates
    a float64 evaluation of the same formula (how the fuzzer tells a formula's own rounding error
    from a kernel's). Raises `Unsupported` for a node outside the grammar (Piecewise...).
    """
    ctx = context(prec)
    return _Evaluator(ctx, values or {}, strict, each).value(expr)


# Precisions a constant is evaluated at until two agree (`nearest_double`): each four times the
# last, so rounding at one is far below rounding at the next; past the last, agreement is taken.
SETTLING_PRECISIONS = (80, 320, 1280, 5120)


def nearest_double(expr: sympy.Basic) -> float:
    """The double nearest the value of the constant `expr` under the real-valued rule (NaN where it
    has none), however much its formula cancels: tanh(50) - 1 is 0 at 80 bits, -7.4e-44 at 320.

    Evaluated at rising precisions until two in a row round to the same double, neither having lost
    what its precision held (both 80 and 320 bits round tanh(200) to exactly 1); a constant still
    doubtful at the last is taken where the last two agree (an exact identity such as
    log(4) - 2*log(2) is 0 at every precision), else it is NaN; one no longer doubtful at the last
    is taken as it is. Raises `Unsupported` as `evaluate`.
    """
    previous: float | None = None
    previous_doubtful = False
    for prec in SETTLING_PRECISIONS:
        evaluator = _Evaluator(context(prec), {}, True, None)
        value, doubtful = float(evaluator.value(expr)), evaluator.doubtful
        agreed = previous is not None and _same_double(value, previous)
        if prec == SETTLING_PRECISIONS[-1]:
            return value if agreed or not doubtful else math.nan
        if agreed and not (doubtful or previous_doubtful):
            return value
        previous, previous_doubtful = value, doubtful
    raise AssertionError("unreachable: the last precision returns")


def near_integer(value: Value, prec: int) -> bool:
    """Whether the finite real `value`, known to `prec` bits, is within its last 64 of an integer."""
    ctx = context(prec)  # not mpmath's global one, which would round `value` to 53 bits
    nearest = ctx.nint(value)
    return bool(abs(value - nearest) <= ctx.ldexp(abs(nearest) + 1, 64 - prec))


def _same_double(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def at(name: str, args: Sequence[float], prec: int, orders: Sequence[int] = ()) -> float:
    """A table function (or, given `orders`, its partial derivative) at a point of doubles, as the
    double nearest its real value: NaN where it has none, never an exception (the kernels' path)."""
    ctx = context(prec)
    try:
        if any(orders):
            result = partial(name, orders, args, prec)
        else:
            result = _FUNCTIONS[name](ctx, *(ctx.mpf(arg) for arg in args))
    except (ArithmeticError, ValueError):
        return math.nan
    result = _real(ctx, result, True)
    return float(result)


def partial(name: str, orders: Sequence[int], args: Sequence[Any], prec: int) -> Value:
    """A partial derivative of a table function at a point: d^orders name(args), real-valued.

    The zeta function's derivatives in s are mpmath's own; every other is mpmath's numerical
    differentiation (at raised precision) of the real-valued implementation.
    """
    ctx = context(prec)
    point = [ctx.convert(arg) for arg in args]
    if any(not ctx.isfinite(arg) for arg in point):
        return ctx.nan
    if name == "zeta":
        return _zeta_partial(ctx, point[0], point[1] if len(point) > 1 else ctx.one, orders)
    implementation = _FUNCTIONS[name]

    def at(*where: Any) -> Value:
        result = implementation(ctx, *where)
        if not ctx.isfinite(result):
            raise _Undefined
        return result

    try:
        return _real(ctx, ctx.diff(at, point, tuple(orders)), True)
    except (_Undefined, ZeroDivisionError, ValueError):
        return ctx.nan


# At most this many bits more for a partial of zeta next to its pole (s + j - 1 down to 1e-400 or so).
_MAX_EXTRA_BITS = 4096


def _zeta_partial(ctx: Any, s: Value, a: Value, orders: Sequence[int]) -> Value:
    """d^k/ds^k d^j/da^j zeta(s, a) from the derivatives in s alone: d/da zeta(s, a) is
    -s zeta(s + 1, a), so d^j/da^j is p(s) zeta(s + j, a) with p(s) = (-1)^j s (s + 1) ... (s + j - 1),
    and Leibniz's rule takes the k derivatives in s of that product. Numerical differentiation in
    a as well took seconds a point at large s and a (the sum at diff's raised precision)."""
    k, j = int(orders[0]), int(orders[1]) if len(orders) > 1 else 0
    if not j:
        return _zeta(ctx, s, a, k)
    near = s + j - 1
    if near != 0 and ctx.mag(near) < 0:
        # Next to the pole of zeta(s + j, a) the terms are about 1/(s + j - 1)^(k + 1) each and cancel
        # to what is left (d2/ds da zeta(s, a) at s = 5e-10 is -zeta(s + 1, a) - s zeta'(s + 1, a),
        # each about 2e9, summing to -0.54): that many more bits (16% off at 64 bits; a fuzz finding).
        ctx = context(ctx.prec + min(_MAX_EXTRA_BITS, (k + 2) * -int(ctx.mag(near)) + 20))
        s, a = ctx.convert(s), ctx.convert(a)
    polynomial = [ctx.one * (-1) ** j]  # coefficients of p, lowest degree first
    for m in range(j):
        shifted = [ctx.zero, *polynomial]  # times s
        polynomial = [c + m * p for c, p in zip(shifted, [*polynomial, ctx.zero], strict=True)]
    total = ctx.zero
    for i in range(min(k, j) + 1):
        # the i-th derivative of p at s: c_d s^d gives d!/(d - i)! c_d s^(d - i)
        derived = ctx.fsum(ctx.ff(d, i) * c * s ** (d - i) for d, c in enumerate(polynomial) if d >= i)
        total += ctx.binomial(k, i) * derived * _zeta(ctx, s + j, a, k - i)
    return total


class _Undefined(Exception):
    pass


class _Evaluator:
    def __init__(
        self, ctx: Any, values: Mapping[str, Any], strict: bool, each: Callable[[Value], Value] | None
    ) -> None:
        self.ctx = ctx
        self.values = values
        self.strict = strict
        self.each = each
        self.memo: dict[sympy.Basic, Value] = {}
        # Whether a step lost what the working precision held (`_doubt_sum`, `_doubt_call`): its
        # result may be the rounding's, not the value's, whatever a second precision says (both
        # round tanh(200) to 1).
        self.doubtful = False
        # The evaluators at higher precisions (`_to_absolute_precision`), one per precision and shared
        # by all of them: nested periodic functions of large constants re-evaluate each subtree once
        # per precision, not once per enclosing function (which doubled the work at every level).
        self.finer: dict[int, _Evaluator] = {int(ctx.prec): self}

    def value(self, node: sympy.Basic) -> Value:
        found = self.memo.get(node)
        if found is None:
            found = _real(self.ctx, self._node(node), self.strict)
            if self.each is not None:
                found = self.each(found)
            self.memo[node] = found
        return found

    def _node(self, node: sympy.Basic) -> Value:
        ctx = self.ctx
        if node.is_Symbol:
            return ctx.convert(self.values[node.name])
        if node.is_Number or node.is_NumberSymbol or node in _SPECIAL_NUMBERS:
            return _number(ctx, node)
        if node.is_Add:
            terms = [self.value(arg) for arg in node.args]
            total = ctx.fsum(terms)
            self._doubt_sum(terms, total)
            return total
        if node.is_Mul:
            result = ctx.one
            for arg in node.args:
                result = result * self.value(arg)
            return result
        if node.is_Pow:
            return _power(ctx, self.value(node.base), self.value(node.exp))
        if isinstance(node, (sympy.Subs, sympy.Derivative)):
            return self._subs(node)
        name = kernel_name(node)
        if name is None or name not in _FUNCTIONS:
            raise Unsupported(type(node).__name__)
        args = [self.value(arg) for arg in node.args]
        if self.strict and any(_complex(arg) for arg in args):
            return ctx.nan
        if name in _PERIODIC_NAMES and self.each is None:
            args = [self._to_absolute_precision(node.args[0], args[0])]
        try:
            result = _FUNCTIONS[name](ctx, *args)
        except (ZeroDivisionError, ValueError, OverflowError):
            return ctx.nan
        self._doubt_call(name, args, result)
        return result

    def _doubt_sum(self, terms: Sequence[Value], total: Value) -> None:
        """A sum that cancelled past all but 64 of the working bits (tanh(200) - 1 is 0 at 80 bits)."""
        ctx = self.ctx
        if self.doubtful or not all(ctx.isfinite(term) for term in terms) or not ctx.isfinite(total):
            return
        largest = max((ctx.mag(term) for term in terms if term), default=None)
        if largest is not None and (not total or largest - ctx.mag(total) > ctx.prec - 64):
            self.doubtful = True

    def _doubt_call(self, name: str, args: Sequence[Value], result: Value) -> None:
        """A function exactly at a point its value turns on: log(1) of a rounded 1 is 0, not the
        -1e-87 of log(tanh(100)); floor(1) of a rounded 1 is 1, not the 0 of floor(tanh(200))."""
        if self.doubtful or _complex(result) or any(_complex(arg) for arg in args):
            return
        first = args[0]
        if name in _JUMPS_AT_INTEGERS:
            self.doubtful = bool(self.ctx.isfinite(first)) and near_integer(first, int(self.ctx.prec))
        elif name in _JUMPS_AT_ZERO:
            self.doubtful = first == 0
        elif name not in _ZERO_OFF_ZERO:
            self.doubtful = result == 0 and all(arg != 0 and self.ctx.isfinite(arg) for arg in args)

    def _to_absolute_precision(self, node: sympy.Basic, value: Value) -> Value:
        """A periodic function's argument to within 2^-prec, not to prec bits: reduced by pi, a large
        argument's rounding is all that is left (cos(3^100) at 80 bits is -0.33; its value -0.23)."""
        ctx = self.ctx
        if _complex(value) or not ctx.isfinite(value) or value == 0:
            return value
        magnitude = int(ctx.mag(value))
        if magnitude <= 8 or magnitude > PERIODIC_BITS:  # past PERIODIC_BITS the value is NaN
            return value
        prec = -(-(ctx.prec + magnitude + 16) // 64) * 64  # a context per 64 bits, not per magnitude
        finer = self.finer.get(prec)
        if finer is None:
            finer = _Evaluator(context(prec), self.values, self.strict, None)
            finer.finer = self.finer
            self.finer[prec] = finer
        return finer.value(node)

    def _subs(self, node: sympy.Subs | sympy.Derivative) -> Value:
        name, orders, args = derivative_call(node)
        return partial(name, orders, [self.value(arg) for arg in args], self.ctx.prec)


def kernel_name(node: sympy.Basic) -> str | None:
    """The name the function table gives a sympy function node: its class's, or a base class's."""
    for cls in type(node).__mro__:
        if cls.__name__ in _FUNCTIONS or cls.__name__ in _ALIASES:
            return _ALIASES.get(cls.__name__, cls.__name__)
        if cls is sympy.Function:
            break
    return None


def derivative_call(
    node: sympy.Subs | sympy.Derivative,
) -> tuple[str, tuple[int, ...], tuple[sympy.Basic, ...]]:
    """(function name, order per argument, arguments) of a Derivative of one table function.

    sympy writes a derivative it has no rule for as `Derivative(f(x, 2), x)` or, for an argument that
    is not a plain symbol, `Subs(Derivative(f(xi), xi), xi, x/2 + 3)`; each differentiation variable
    is then exactly one argument of f. Raises `Unsupported` for any other shape.
    """
    substitutions: dict[sympy.Basic, sympy.Basic] = {}
    derivative = node
    if isinstance(node, sympy.Subs):
        derivative, dummies, points = node.args
        substitutions = dict(zip(dummies, points, strict=True))
    if not isinstance(derivative, sympy.Derivative):
        raise Unsupported("Subs")
    applied = derivative.expr
    name = kernel_name(applied)
    if name is None or not isinstance(applied, sympy.Function):
        raise Unsupported("Derivative")
    orders = [0] * len(applied.args)
    for variable, count in derivative.variable_count:
        positions = [i for i, arg in enumerate(applied.args) if arg == variable]
        others = [i for i, arg in enumerate(applied.args) if arg != variable and arg.has(variable)]
        if len(positions) != 1 or others:
            raise Unsupported("Derivative")
        orders[positions[0]] += int(count)
    args = tuple(substitutions.get(arg, arg) for arg in applied.args)
    return name, tuple(orders), args


_SPECIAL_NUMBERS = frozenset(
    {sympy.S.ImaginaryUnit, sympy.S.ComplexInfinity, sympy.S.NaN, sympy.S.Infinity, sympy.S.NegativeInfinity}
)


def _complex(value: Value) -> bool:
    return hasattr(value, "_mpc_")  # each mpmath context has classes of its own: no isinstance


def _real(ctx: Any, value: Value, strict: bool) -> Value:
    if _complex(value):
        if value.imag == 0:
            return value.real
        if strict:
            return ctx.nan
        # Continuing, sin(asin(2)) comes back as 2 + 1e-60i: real, to the working precision.
        if abs(value.imag) <= abs(value.real) * ctx.ldexp(1, 8 - ctx.prec):
            return value.real
    return value


def _number(ctx: Any, node: sympy.Basic) -> Value:
    if node is sympy.S.ImaginaryUnit:
        return ctx.mpc(0, 1)
    if node is sympy.S.ComplexInfinity or node is sympy.S.NaN:
        return ctx.nan
    if node is sympy.S.Infinity:
        return ctx.inf
    if node is sympy.S.NegativeInfinity:
        return ctx.ninf
    if node.is_Integer:
        return ctx.mpf(int(node))
    if node.is_Rational:
        return ctx.mpf(int(node.p)) / int(node.q)
    if node.is_Float:
        return ctx.make_mpf(node._mpf_)
    return ctx.make_mpf(node._as_mpf_val(ctx.prec + 10))


def _power(ctx: Any, base: Value, exponent: Value) -> Value:
    """base^exponent under the real-valued rule, with IEEE limits where the result leaves any double."""
    if _complex(base) or _complex(exponent):
        return ctx.power(base, exponent)  # continuing in the complex plane (strict=False)
    if ctx.isnan(base) or ctx.isnan(exponent):
        return ctx.nan
    if exponent == 0:
        return ctx.one
    if base == 0:
        return ctx.zero if exponent > 0 else ctx.inf
    if base < 0 and not ctx.isint(exponent):
        return ctx.mpc(base) ** exponent if ctx.isfinite(base) else ctx.nan  # not real
    if ctx.isinf(base) or ctx.isinf(exponent):
        return _ieee_power(ctx, base, exponent)
    if abs(base) == 1:
        # (-1)^cosh(10^12): mpmath makes an integer exponent a Python int, 1.4e12 bits here.
        return -ctx.one if base < 0 and _odd(exponent) else ctx.one
    bits = abs(exponent * ctx.log(abs(base), 2))
    if bits > 2**62:
        # Far past any double (x^(10^400)): 0 or +-inf, the sign following the exponent's parity.
        magnitude = ctx.inf if (abs(base) > 1) == (exponent > 0) else ctx.zero
        return -magnitude if base < 0 and _odd(exponent) else magnitude
    return ctx.power(base, exponent)


def _odd(integer: Value) -> bool:
    """Whether an integer-valued mpf is odd, from its representation: int(10^(10^11)) never returns.

    mpmath keeps the mantissa odd, so man * 2^exp is odd exactly when exp is 0 (and man is odd). A
    double (a rounded intermediate) is odd by its own exact remainder.
    """
    if isinstance(integer, float):
        return integer % 2 == 1
    _, mantissa, exponent, _ = integer._mpf_
    return bool(exponent == 0 and mantissa % 2 == 1)


def _ieee_power(ctx: Any, base: Value, exponent: Value) -> Value:
    try:
        return ctx.mpf(math.pow(float(base), float(exponent)))
    except ValueError:
        return ctx.nan
    except OverflowError:
        return ctx.inf


# -------------------------------------------------------------------------- the functions, real-valued


def _real_args(function: Callable[..., Value]) -> Callable[..., Value]:
    """A function defined on the reals only (floor, Min, Heaviside): NaN for a complex argument."""

    def real_only(ctx: Any, *args: Value) -> Value:
        if any(_complex(arg) or ctx.isnan(arg) for arg in args):
            return ctx.nan
        return function(ctx, *args)

    return real_only


def _bounded(bits: int, beyond: Callable[[Any, Value], Value]) -> Callable[..., Callable[..., Value]]:
    """Call the function only for arguments below 2^bits in magnitude; beyond, `beyond(ctx, x)`."""

    def wrap(function: Callable[..., Value]) -> Callable[..., Value]:
        def bounded(ctx: Any, x: Value) -> Value:
            if ctx.isnan(x):
                return ctx.nan
            if ctx.isinf(x) or (x != 0 and ctx.mag(x) > bits):
                return beyond(ctx, x)
            return function(ctx, x)

        return bounded

    return wrap


def _nan(ctx: Any, x: Value) -> Value:
    return ctx.nan


def _sign_of(value: int) -> Callable[[Any, Value], Value]:
    """Beyond the range: a constant times the argument's sign (tanh -> +-1, sinh -> +-inf...)."""

    def limit(ctx: Any, x: Value) -> Value:
        constant = ctx.inf if value == 2 else ctx.mpf(value)
        return constant if _re(x) > 0 else (-constant if value else ctx.zero)

    return limit


def _even(value: int) -> Callable[[Any, Value], Value]:
    def limit(ctx: Any, x: Value) -> Value:
        return ctx.inf if value == 2 else ctx.mpf(value)

    return limit


def _exp_limit(ctx: Any, x: Value) -> Value:
    return ctx.inf if _re(x) > 0 else ctx.zero


def _re(x: Value) -> Value:
    return x.real if _complex(x) else x


_periodic = _bounded(PERIODIC_BITS, _nan)


def _inverse(function: Callable[[Any, Value], Value]) -> Callable[[Any, Value], Value]:
    """f(1/x) for the reciprocal inverse functions (acot, asec...): mpmath's own are defined so."""

    def at(ctx: Any, x: Value) -> Value:
        if x == 0:
            return function(ctx, ctx.inf if _re(x) >= 0 else ctx.ninf)
        return function(ctx, 1 / x)

    return at


def _acot(ctx: Any, x: Value) -> Value:
    # sympy: acot(0) = pi/2 (acot(x) = atan(1/x) continued from the right).
    return ctx.pi / 2 if x == 0 else ctx.atan(1 / x)


def _polygamma(ctx: Any, n: Value, x: Value) -> Value:
    if ctx.isnan(n) or ctx.isnan(x) or _complex(n):
        return ctx.nan
    if ctx.isinf(n) or abs(n) > _MAX_ORDER:
        return ctx.nan
    if not _complex(x) and (ctx.isinf(x) or (x != 0 and ctx.mag(x) > _SPECIAL_BITS)):
        return _polygamma_far(ctx, n, x)
    if ctx.isint(n) and n >= 0:
        order = int(n)
        if _complex(x):
            return ctx.psi(order, x)
        if x <= 0 and ctx.isint(x):
            return ctx.nan
        if x < 0:
            return _polygamma_reflected(ctx, order, x)
        return ctx.psi(order, x)
    # sympy's generalisation to any order s (Espinosa and Moll):
    # psi(s, z) = (zeta'(s+1, z) + (EulerGamma + psi(-s)) zeta(s+1, z)) / Gamma(-s)
    if _re(x) <= 0:
        return ctx.nan
    s = n
    # Next to an integer order m >= 0 the two terms nearly cancel (1/Gamma(-s) -> 0, psi(-s) -> a
    # pole): the precision is raised by the bits they share. Closer than the precision itself, psi
    # is psi(m, x) (it is smooth in its order): an order of -e^(-99177) asked for 143,000 more bits.
    nearest = ctx.nint(s)
    distance = abs(s - nearest)
    if nearest >= 0 and (distance == 0 or ctx.mag(distance) < -ctx.prec - 30):
        return _polygamma(ctx, nearest, x)
    with ctx.extraprec(30 + (max(0, -ctx.mag(distance)) if nearest >= 0 else 0)):
        zeta = _zeta(ctx, s + 1, x, 0)
        return (_zeta(ctx, s + 1, x, 1) + (ctx.euler + ctx.digamma(-s)) * zeta) * ctx.rgamma(-s)


def _polygamma_far(ctx: Any, n: Value, x: Value) -> Value:
    """polygamma past 2^1100: log x for n = 0, (-1)^(n+1) (n-1)!/x^n (0 in every double) beyond; the
    doubles that far left are all integers, poles."""
    if x < 0 or not ctx.isint(n) or n < 0:
        return ctx.nan
    if n == 0:
        return ctx.log(x)
    return (-1) ** (int(n) + 1) * ctx.factorial(int(n) - 1) / _power(ctx, x, n)


_COT_POLYNOMIALS: list[tuple[int, ...]] = [(0, 1)]
_COT_LOCK = threading.Lock()


def cot_derivative_polynomial(order: int) -> tuple[int, ...]:
    """Coefficients (constant first) of P_n with d^n/dt^n cot(t) = P_n(cot t).

    P_0(c) = c and P_{k+1}(c) = -(1 + c^2) P_k'(c); kept once computed.
    """
    with _COT_LOCK:
        while len(_COT_POLYNOMIALS) <= order:
            p = _COT_POLYNOMIALS[-1]
            derivative = [k * p[k] for k in range(1, len(p))] or [0]
            grown = [0] * (len(derivative) + 2)
            for k, coefficient in enumerate(derivative):
                grown[k] -= coefficient
                grown[k + 2] -= coefficient
            while len(grown) > 1 and grown[-1] == 0:
                grown.pop()
            _COT_POLYNOMIALS.append(tuple(grown))
        return _COT_POLYNOMIALS[order]


def _polygamma_reflected(ctx: Any, order: int, x: Value) -> Value:
    """psi^(n)(x) = (-1)^n psi^(n)(1 - x) - pi^(n+1) P_n(cot(pi x)) for x < 0: mpmath's own recurs in |x|."""
    with ctx.extraprec(order + 20):
        c = ctx.cospi(x) / ctx.sinpi(x)
        polynomial = ctx.polyval(list(reversed(cot_derivative_polynomial(order))), c)
        return (-1) ** order * ctx.psi(order, 1 - x) - ctx.pi ** (order + 1) * polynomial


def _zeta_function(ctx: Any, s: Value, a: Value | None = None) -> Value:
    if a is None:
        if _complex(s):
            return ctx.zeta(s)
        if ctx.isnan(s) or s == 1:
            return ctx.nan
        if ctx.isinf(s):
            return ctx.one if s > 0 else ctx.nan
        if s < _MIN_ZETA_S:  # past every double, but for the trivial zeros at the even integers
            return ctx.zero if ctx.isint(s / 2) else ctx.inf * ctx.sign(ctx.sinpi(s / 2))
        if s != 0 and ctx.mag(s) < -ctx.prec - 10:
            s = ctx.zero  # mpmath takes 1 - s as 1 (its pole) for s next to 0; zeta is smooth there
        return ctx.zeta(s)
    return _zeta(ctx, s, a, 0)


def _zeta(ctx: Any, s: Value, a: Value, derivative: int) -> Value:
    """Hurwitz zeta(s, a) and its derivatives in s, real-valued and bounded."""
    if _complex(s) or _complex(a):
        return ctx.zeta(s, a, derivative)
    if not (ctx.isfinite(s) and ctx.isfinite(a)) or s == 1 or s < _MIN_ZETA_S:
        return ctx.nan
    if a > 0 and s != 0 and ctx.mag(s) < -ctx.prec - 10:
        # mpmath divides by s next to 0, where zeta is smooth for a > 0; for a <= 0 a fractional s,
        # however small, leaves it without a real value (_zeta_left).
        s = ctx.zero
    if any(v != 0 and ctx.mag(v) > _SPECIAL_BITS for v in (s, a)):
        return ctx.nan
    if a <= 0:
        return _zeta_left(ctx, s, a, derivative)
    if s > 1:
        if not derivative:
            return _zeta_sum(ctx, s, a)
        # A term b^-s changes by -ln(b) b^-s: next to b = 1 far less than the term itself, which a
        # numerical derivative of the sum cannot see (d/ds zeta(s) at 100 is -ln 2 2^-100, the sum
        # 1 + 2^-100). Terms below 2 are differentiated exactly, the rest of the sum numerically.
        head = ctx.zero
        while a < 2:
            head += (-ctx.log(a)) ** derivative * _power(ctx, a, -s)
            a = ctx.fadd(a, 1, exact=True)
        return head + _zeta_sum(ctx, s, a, derivative)
    if a > _MAX_ZETA_TERMS:
        # Euler-Maclaurin converges fast here: its terms fall by (|s|/(2 pi a))^2 < 1/64 (s >= -400),
        # where mpmath's sum did not return in minutes (zeta(-399.5, 1e12)).
        if not derivative:
            return _zeta_right(ctx, s, a)
        if _zeta_overflows(ctx, s, a, derivative):
            # -a^(1-s)/(1-s) (-ln a)^k dominates and is past every double. Not for the value
            # itself, which constant folding may divide by another such value.
            return (-1) ** (derivative + 1) * ctx.inf
        return ctx.diff(lambda t: _zeta_right(ctx, t, a), s, derivative)
    if s >= _fourier_below(ctx) or (derivative and s > _MPMATH_DERIVATIVE_FROM):
        # mpmath differentiates its own sum exactly: 6 ms at d^20/ds^20 zeta(-13, 0.3) where diff of
        # Hurwitz's series took 12 s; its time grows with |s| (30 ms at d^20 at s = -40, 0.4 s at -150).
        return ctx.zeta(s, a, derivative)
    shift = int(ctx.ceil(a)) - 1
    base = a - shift
    # The series' length is fixed here, at this precision: inside diff, which works at several times
    # it, a length chosen anew grew as 2^(prec / (1 - s)) (d^3/ds^3 at s = -14.78: hours). Each order
    # multiplies a term by at most ln(2 pi n) < 2^4: 4 more bits of terms per order.
    terms = _fourier_terms(ctx.prec + 4 * derivative, s)
    with ctx.extraprec(20):
        # zeta(s, b + m) = zeta(s, b) - sum_{k < m} (b + k)^-s, that sum differentiated term by term
        # (numerically, its hundreds of terms at diff's precision took seconds a point).
        shifted = ctx.fsum((-ctx.log(base + k)) ** derivative * (base + k) ** (-s) for k in range(shift))
        if derivative:
            return ctx.diff(lambda t: _zeta_fourier(ctx, t, base, terms), s, derivative) - shifted
        return _zeta_fourier(ctx, s, base, terms) - shifted


def _zeta_right(ctx: Any, s: Value, a: Value) -> Value:
    """zeta(s, a) by Euler-Maclaurin: for s > 1, a > 0, every term positive past the Bernoulli ones;
    for s < 1 with a past `_MAX_ZETA_TERMS`, where the Bernoulli terms fall fast.

    mpmath's own sum is off by far more than its precision for large s and a (zeta(24.95, 48.26) at
    64 bits: 1e-9 relative; at 160 bits, 1e-13).
    """
    with ctx.extraprec(20):
        # The Bernoulli series is asymptotic: its smallest term is about e^(-2 pi w) (w past s), so w
        # must pass both s and prec ln 2 / (2 pi) for that term to be below the precision.
        terms = _euler_maclaurin_terms(ctx, s, a)
        w = a + terms
        head = ctx.fsum(_power(ctx, a + k, -s) for k in range(terms))
        power = _power(ctx, w, -s)
        total = head + w * power / (s - 1) + power / 2
        factor = s * power / w
        limit = ctx.ldexp(abs(total), -ctx.prec - 10)
        previous = ctx.inf
        # Past 2,500 bits the series needs more than 400 terms (820 at 3,456 bits, whose limit left
        # zeta(3, 1/3) wrong past its 2,500th bit and cos(10^1000 zeta(3, 1/3)) -0.455, not -0.897).
        for j in range(1, max(400, ctx.prec // 4)):
            term = ctx.bernoulli(2 * j) / ctx.factorial(2 * j) * factor
            if abs(term) < limit or abs(term) > previous:
                break
            total += term
            previous = abs(term)
            factor *= (s + 2 * j - 1) * (s + 2 * j) / (w * w)
        return total


def _zeta_sum(ctx: Any, s: Value, a: Value, derivative: int = 0) -> Value:
    """zeta(s, a) for s > 1, a > 0, or (a >= 2) its derivative in s: by the defining sum, term by
    term, or by Euler-Maclaurin, differentiated numerically, whichever needs fewer terms at this
    precision (at s = 999.5, a = 2: three terms against a thousand at diff's raised precision, where
    d^14/ds^14 took 1.9 s a point)."""
    if _direct_terms(ctx, s, a) < _euler_maclaurin_terms(ctx, s, a):
        return _zeta_direct(ctx, s, a, derivative)
    if derivative:
        return ctx.diff(lambda t: _zeta_right(ctx, t, a), s, derivative)
    return _zeta_right(ctx, s, a)


def _euler_maclaurin_terms(ctx: Any, s: Value, a: Value) -> int:
    """The terms `_zeta_right` sums before its Bernoulli series: w = a + terms past s and past
    prec ln 2 / (2 pi), the Bernoulli series' smallest term (about e^(-2 pi w)) below the precision."""
    return max(10, int(ctx.ceil(s - a)), int(ctx.prec * 0.12) + 1)


def _direct_terms(ctx: Any, s: Value, a: Value) -> Value:
    """The terms of the defining sum down to the precision: (a + n)^-s < a^-s 2^-(prec + 10) from
    n = a (2^((prec + 10)/s) - 1) on."""
    return a * (ctx.power(2, (ctx.prec + 10) / s) - 1)


_MAX_DIRECT_TERMS = 10_000


def _zeta_direct(ctx: Any, s: Value, a: Value, derivative: int = 0) -> Value:
    """zeta(s, a) for s > 1 by its defining sum, or its derivative in s term by term (a >= 2 then,
    so every term has the sign (-1)^derivative), until a term is below the precision: chosen where
    that takes fewer terms than Euler-Maclaurin; at most 10^4, a bound never reached then."""
    with ctx.extraprec(20):
        total = ctx.zero
        for k in range(_MAX_DIRECT_TERMS):
            term = (-ctx.log(a + k)) ** derivative * _power(ctx, a + k, -s)
            if k and abs(term) < ctx.ldexp(abs(total), -ctx.prec - 10):
                break
            total += term
        return total


_MPMATH_DERIVATIVE_FROM = -40  # right of this, mpmath's own derivatives in s beat diff of the series


def _fourier_below(ctx: Any) -> Any:
    """The s below which Hurwitz's series needs at most _FOURIER_MAX_TERMS terms at this precision
    (`_fourier_terms` solved for s)."""
    return 1 - ctx.mpf(ctx.prec + _FOURIER_GUARD_BITS) / math.log2(_FOURIER_MAX_TERMS)


def _zeta_left(ctx: Any, s: Value, a: Value, derivative: int) -> Value:
    """zeta(s, a) for a <= 0: real only for integer s (terms (n + a)^-s with n + a < 0)."""
    if derivative or not ctx.isint(s) or ctx.isint(a):
        return ctx.nan
    if s >= 2:
        order = int(s) - 1
        return (-1) ** (order + 1) * _polygamma(ctx, ctx.mpf(order), a) / ctx.factorial(order)
    n = -int(s)  # zeta(-n, a) = -B_{n+1}(a) / (n + 1)
    return -ctx.bernpoly(n + 1, a) / (n + 1)


_PAST_DOUBLES = 1040  # log2 of a magnitude that rounds to infinity, with room for an estimate's error


def _zeta_overflows(ctx: Any, s: Value, a: Value, k: int) -> bool:
    """Whether the k-th derivative in s of zeta(s, a), s < 1, is past every double, judged by its
    leading term a^(1-s)/(s-1) (-ln a)^k. Where 1 - s <= a and k <= (1-s) ln a / 4 the sum is
    between a tenth and twice it, of its sign: the term a^-s/2 is at most half of it, the
    Euler-Maclaurin terms fall by (|s|/(2 pi a))^2 from a twelfth, and differentiating 1/(s-1)
    instead of a^(1-s) adds at most a third (a factor k/((1-s) ln a) per order taken there)."""
    log_a = ctx.log(a)
    if 1 - s > a or 4 * k > (1 - s) * log_a:
        return False
    return bool((1 - s) * ctx.log(a, 2) - ctx.log(1 - s, 2) + k * ctx.log(log_a, 2) > _PAST_DOUBLES)


# Hurwitz's series is summed where it needs at most this many terms, to this many bits past the
# precision asked for.
_FOURIER_MAX_TERMS = 64
_FOURIER_GUARD_BITS = 10


def _fourier_terms(prec: int, s: Value) -> int:
    """The terms of Hurwitz's series that reach `prec` bits: they fall as n^(s-1)."""
    return int(2 ** ((prec + _FOURIER_GUARD_BITS) / (1 - s))) + 2


def _zeta_fourier(ctx: Any, s: Value, b: Value, terms: int) -> Value:
    """zeta(s, b) for s well below 0 and 0 < b <= 1 by Hurwitz's formula (`_zeta` shifts it to a):

    zeta(s, b) = 2 Gamma(1-s) / (2 pi)^(1-s) sum_n sin(2 pi n b + pi s / 2) / n^(1-s), whose terms
    fall as n^(s-1); mpmath's Euler-Maclaurin sum needs time growing with |s| (0.3 s at s = -150).
    """
    with ctx.extraprec(20):
        series = ctx.fsum(ctx.sinpi(2 * n * b + s / 2) / ctx.mpf(n) ** (1 - s) for n in range(1, terms + 1))
        return 2 * ctx.gamma(1 - s) / (2 * ctx.pi) ** (1 - s) * series


def _gamma_far(ctx: Any, x: Value) -> Value:
    """gamma past 2^1100 overflows every double; the doubles that far left are poles."""
    return ctx.inf if _re(x) > 0 else ctx.nan


def _loggamma_far(ctx: Any, x: Value) -> Value:
    return x * (ctx.log(x) - 1) if _re(x) > 0 else ctx.nan


def _loggamma(ctx: Any, x: Value) -> Value:
    # The principal branch, as sympy defines it: real for x > 0 only (log|gamma| is not loggamma).
    if not _complex(x) and x <= 0 and ctx.isint(x):
        return ctx.inf
    return ctx.loggamma(x)  # complex for x < 0: NaN under the real-valued rule


def _gamma(ctx: Any, x: Value) -> Value:
    if not _complex(x) and ctx.isint(x) and x <= 0:
        return ctx.nan
    return ctx.gamma(x)


def _beta(ctx: Any, a: Value, b: Value) -> Value:
    if not all(ctx.isfinite(v) for v in (a, b)):
        return ctx.nan
    if any(not _complex(v) and v != 0 and ctx.mag(v) > _SPECIAL_BITS for v in (a, b)):
        return ctx.nan
    # mpmath forms a + b at the working precision: with one argument below the other's last bit
    # (beta(sin x, x^x) at x = 92.8, where x^x is 3.8e182), Gamma(b) / Gamma(a + b) came out 1 and
    # the value Gamma(a), not Gamma(a) b^-a: 2e181 times too small. Enough bits to hold the sum,
    # down to what can still matter: the smaller one changes the value by about it times log of the
    # larger (so nothing below the larger's magnitude plus the precision), and a gap of a billion
    # bits (9^y at y = -10^9) made mpmath shift a billion-bit mantissa: MemoryError.
    gap = 0
    if a != 0 and b != 0:
        high, low = sorted((ctx.mag(a), ctx.mag(b)), reverse=True)
        gap = min(high - low, max(high, 0) + ctx.prec + 64)
    try:
        with ctx.extraprec(gap + 10):
            value = ctx.beta(a, b)
    except ValueError:  # a pole of a numerator gamma
        return ctx.nan
    return +value


def _real_root(ctx: Any, x: Value, n: Value) -> Value:
    if _complex(x) or _complex(n):
        return _principal_root(ctx, x, n)
    if n == 0 or ctx.isnan(x) or ctx.isnan(n):
        return ctx.nan
    if x >= 0:
        return _power(ctx, x, 1 / n)
    if ctx.isint(n) and _odd(n):
        return -_power(ctx, -x, 1 / n)
    return _principal_root(ctx, ctx.mpc(x), n)  # not real: for continuing (strict makes it NaN)


def _principal_root(ctx: Any, x: Value, n: Value) -> Value:
    """The principal n-th root of a complex x, as exp(log(x) / n): z ** (1 / n) with 1/n an integer
    (root(-2, 1e-20)) raised z to the 10^20th power by repeated squaring, and never returned.

    Past 2^62, exp would compute ln 2 to as many bits as log(x) / n has (root(-2, 9^-(1.1e9)): 3.5e9
    bits, for as long as the fuzzer ran): its magnitude is 0 far left of the axis, and otherwise
    neither its size nor its phase is known (NaN), as `_power` does for real powers."""
    if x == 0:
        return ctx.zero
    w = ctx.log(x) / n
    if abs(w) > 2**62:
        return ctx.zero if ctx.re(w) < -(2**61) else ctx.nan
    return ctx.exp(w)


def _heaviside(ctx: Any, x: Value, h0: Value | None = None) -> Value:
    if x == 0:
        return ctx.mpf(0.5) if h0 is None else h0
    return ctx.one if x > 0 else ctx.zero


def _dirac(ctx: Any, x: Value, order: Value | None = None) -> Value:
    return ctx.nan if x == 0 else ctx.zero


def _sign(ctx: Any, x: Value) -> Value:
    # Continuing in the complex plane, sign(z) is z/|z| (sympy's and mpmath's definition).
    return ctx.sign(x) if _complex(x) else ctx.mpf(ctx.sign(x))


def _atan2(ctx: Any, y: Value, x: Value) -> Value:
    if x == 0 and y == 0:
        return ctx.nan
    return ctx.atan2(y, x)


def _arg(ctx: Any, x: Value) -> Value:
    return ctx.arg(x) if x != 0 else ctx.nan


def _exp_family(function_name: str, beyond: Callable[[Any, Value], Value]) -> Callable[[Any, Value], Value]:
    def evaluate(ctx: Any, x: Value) -> Value:
        return getattr(ctx, function_name)(x)

    return _bounded(_EXP_BITS, beyond)(evaluate)


def _part(name: str) -> Callable[[Any, Value], Value]:
    """re or im: of a complex value (continuing), of a real one; NaN has neither (mpmath says im(nan) = 0)."""

    def part(ctx: Any, x: Value) -> Value:
        if not _complex(x) and ctx.isnan(x):
            return ctx.nan
        return getattr(ctx, name)(x)

    return part


def _method(name: str) -> Callable[..., Value]:
    def call(ctx: Any, *args: Value) -> Value:
        return getattr(ctx, name)(*args)

    return call


_PERIODIC_NAMES = frozenset({"sin", "cos", "tan", "sec", "csc", "cot"})


def _periodic_method(name: str) -> Callable[[Any, Value], Value]:
    return _periodic(_method(name))


_FUNCTIONS: dict[str, Callable[..., Value]] = {
    **{name: _periodic_method(name) for name in _PERIODIC_NAMES},
    "asin": _method("asin"),
    "acos": _method("acos"),
    "atan": _method("atan"),
    "asec": _inverse(_method("acos")),
    "acsc": _inverse(_method("asin")),
    "acot": _acot,
    "atan2": _real_args(_atan2),
    "sinh": _exp_family("sinh", _sign_of(2)),
    "cosh": _exp_family("cosh", _even(2)),
    "tanh": _exp_family("tanh", _sign_of(1)),
    "sech": _exp_family("sech", _even(0)),
    "csch": _exp_family("csch", _sign_of(0)),
    "coth": _exp_family("coth", _sign_of(1)),
    "asinh": _method("asinh"),
    "acosh": _method("acosh"),
    "atanh": _method("atanh"),
    "asech": _inverse(_method("acosh")),
    "acsch": _inverse(_method("asinh")),
    "acoth": _inverse(_method("atanh")),
    "exp": _exp_family("exp", _exp_limit),
    "log": _method("log"),
    "RealRoot": _real_root,
    "Abs": _method("fabs"),
    "sign": _sign,
    "floor": _real_args(_method("floor")),
    "ceiling": _real_args(_method("ceil")),
    "Min": _real_args(lambda ctx, *args: min(args)),
    "Max": _real_args(lambda ctx, *args: max(args)),
    "Heaviside": _real_args(_heaviside),
    "DiracDelta": _real_args(_dirac),
    "re": _part("re"),
    "im": _part("im"),
    "arg": _real_args(_arg),
    "erf": _method("erf"),
    # mpmath's erfc overflows converting its exponent past about 1e150; 2^64 is past every double's.
    "erfc": _bounded(_EXP_BITS, lambda ctx, x: ctx.zero if _re(x) > 0 else ctx.mpf(2))(_method("erfc")),
    "gamma": _bounded(_SPECIAL_BITS, _gamma_far)(_gamma),
    "loggamma": _bounded(_SPECIAL_BITS, _loggamma_far)(_loggamma),
    "digamma": lambda ctx, x: _polygamma(ctx, ctx.zero, x),
    "polygamma": _polygamma,
    "beta": _beta,
    "factorial": _bounded(_SPECIAL_BITS, _gamma_far)(lambda ctx, x: _gamma(ctx, x + 1)),
    "zeta": _zeta_function,
}

# Functions that jump where their first argument is an integer or 0, and those whose value is 0
# away from 0 where nothing rounded (im(2), Heaviside(-1), floor(1/2): the jumps are here too).
_JUMPS_AT_INTEGERS = frozenset({"floor", "ceiling"})
_JUMPS_AT_ZERO = frozenset({"sign", "Heaviside", "DiracDelta"})
_ZERO_OFF_ZERO = _JUMPS_AT_INTEGERS | _JUMPS_AT_ZERO | {"im", "arg", "Min", "Max"}

# sympy classes that are other spellings of a function above.
_ALIASES = {"RealFloor": "floor", "RealCeiling": "ceiling", "RealPart": "re", "ImaginaryPart": "im"}
