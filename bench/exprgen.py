"""Deterministic generator of realistic nested expressions in 1 to 4 variables, for cold benchmarks.

The text uses only syntax that chainrule's parser, sympy's `parse_expr` (after `^` -> `**`) and
math.js all read the same way: explicit `*`, `^` for powers, named functions with one argument.
Each expression of a stream is distinct (a numbered coefficient is woven in), so none hits a cache.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

VARIABLES = ("x", "y", "z", "w")
UNARY = ("sin", "cos", "exp", "log", "sqrt", "tan", "atan", "tanh")


def _leaf(rng: random.Random, names: tuple[str, ...]) -> str:
    name = rng.choice(names)
    kind = rng.random()
    if kind < 0.4:
        return name
    if kind < 0.7:
        return f"{rng.randint(2, 9)}*{name}"
    return f"{name}^{rng.randint(2, 4)}"


def _node(rng: random.Random, names: tuple[str, ...], depth: int) -> str:
    if depth <= 0 or rng.random() < 0.2:
        return _leaf(rng, names)
    kind = rng.random()
    inner = _node(rng, names, depth - 1)
    if kind < 0.35:
        function = rng.choice(UNARY)
        # log and sqrt of something kept positive, as one writes them in practice.
        if function in ("log", "sqrt"):
            inner = f"1 + ({inner})^2"
        return f"{function}({inner})"
    other = _node(rng, names, depth - 1)
    if kind < 0.6:
        return f"({inner}) * ({other})"
    if kind < 0.75:
        return f"({inner}) + ({other})"
    if kind < 0.9:
        return f"({inner}) / (1 + ({other})^2)"
    return f"({inner})^{rng.randint(2, 3)}"


def expression(index: int, seed: int = 0) -> tuple[str, str]:
    """The `index`-th expression of stream `seed`, and the variable to differentiate by."""
    rng = random.Random(seed * 1_000_003 + index)
    names = VARIABLES[: rng.randint(1, 4)]
    body = _node(rng, names, rng.randint(2, 4))
    # The index makes every expression distinct; the first variable is always present.
    return f"{body} + {index + 2}*{names[0]}^2", names[0]


def expressions(count: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """`count` distinct expressions with their variable to differentiate by."""
    return (expression(index, seed) for index in range(count))


def to_sympy_syntax(text: str) -> str:
    """The same expression in Python syntax, for `sympy.parse_expr` (the baseline only)."""
    return text.replace("^", "**")


if __name__ == "__main__":
    for text, variable in expressions(10):
        print(variable, text)
