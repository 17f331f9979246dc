"""Generated numeric code that computes each output in the caller's column instead of a fresh array.

lambdify's function returns one fresh array per output, which evaluation then copied into the reply's
column, chunk by chunk: for a 4x4 Jacobian 20 copies per chunk. Here the function takes one more
argument per output, `_o0, _o1, ...` (None by default), and each output's chain of last operations,
from the top of its expression down the first operand, calls its ufunc with `out=` that argument:

    _a0*x1 + x5        ->  add(multiply(_a0, x1, out=_o0), x5, out=_o0)
    -x4*sin(_a0)       ->  multiply(negative(x4, out=_o12), sin(_a0), out=_o12)

The operator called the same ufunc: the same loop on the same operands in the same order, so every
value is bit for bit what it was; with `out=None` numpy allocates as the operator did. A destination
aliases nothing the code reads, so it can hold a partial result while the rest of the expression is
computed. Where numpy cannot write a value into a float64 column (complex) it refuses with a
TypeError before writing, and evaluation computes the chunk again without destinations
(`numeric._computed`). Only `+ - * /`, unary minus and the namespace's one-output ufuncs are
rewritten; `**` keeps numpy's operator (its fast paths for small exponents are not `np.power`'s).

Writing temporaries in place as well (an operation on a temporary of the expression into that
temporary) was measured and left out: no gain at 10^5 points (numpy's allocator reuses the freed
block, still in cache), and numpy writes a one-element array over itself three times slower than
anew, which the single-point path would pay.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["OPERATORS", "rewrite"]

# The namespace names of the ufuncs the operators call (`kernels.NAMESPACE` holds them).
OPERATORS: Mapping[type[ast.AST], str] = {
    ast.Add: "add",
    ast.Sub: "subtract",
    ast.Mult: "multiply",
    ast.Div: "divide",
    ast.USub: "negative",
}


def rewrite(source: str, outputs: int, namespace: Mapping[str, Any]) -> ast.Module:
    """lambdify's `source` (one function returning `outputs` values, a tuple or list of them unless
    one) with output arguments, its last operations writing into them."""
    module = ast.parse(source)
    function = module.body[0]
    if not isinstance(function, ast.FunctionDef) or not isinstance(function.body[-1], ast.Return):
        raise RuntimeError("lambdify's code is not one function ending in a return")  # a bug
    names = [f"_o{index}" for index in range(outputs)]
    function.args.args.extend(ast.arg(name) for name in names)
    function.args.defaults = [ast.Constant(None) for _ in names]
    ufuncs = {name: f.nin for name, f in namespace.items() if isinstance(f, np.ufunc) and f.nout == 1}
    rewriter = _Rewriter(ufuncs)
    returned = function.body[-1]
    value = returned.value
    if isinstance(value, (ast.List, ast.Tuple)) and outputs != 1:
        value.elts = [rewriter.into(element, name) for element, name in zip(value.elts, names, strict=True)]
    elif value is not None and outputs == 1:
        returned.value = rewriter.into(value, names[0])
    else:
        raise RuntimeError(f"lambdify's code does not return {outputs} values")  # a bug
    return ast.fix_missing_locations(module)


class _Rewriter:
    """Rewrites expressions; `ufuncs` are the namespace's ufunc names and their operand counts."""

    def __init__(self, ufuncs: Mapping[str, int]) -> None:
        self.ufuncs = ufuncs

    def into(self, node: ast.expr, out: str) -> ast.expr:
        """`node` computed in `out` down its chain of first operands, where each is a ufunc's."""
        applied = self._applied(node)
        if applied is None:
            return node
        ufunc, (first, *rest) = applied
        return ast.Call(
            ufunc, [self.into(first, out), *rest], [ast.keyword("out", ast.Name(out, ast.Load()))]
        )

    def _applied(self, node: ast.expr) -> tuple[ast.Name, list[ast.expr]] | None:
        """The ufunc `node` applies (an operator's or a namespace ufunc called by name) and its operands."""
        load = ast.Load()
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return ast.Name(OPERATORS[type(node.op)], load), [node.left, node.right]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return ast.Name(OPERATORS[ast.USub], load), [node.operand]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and len(node.args) == self.ufuncs.get(node.func.id)  # more would be read as `out`
            and not node.keywords
            and not any(isinstance(arg, ast.Starred) for arg in node.args)
        ):
            return ast.Name(node.func.id, load), list(node.args)
        return None
