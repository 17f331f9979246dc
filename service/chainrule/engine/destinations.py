"""Generated numeric code that computes each output in the caller's column instead of a fresh array.

lambdify's function returns one fresh array per output, which evaluation then copied into the reply's
column chunk by chunk: for a 4x4 Jacobian 20 copies per chunk, and on the way every output allocated
a temporary per operation (numpy elides temporaries only above 256 KB, and our chunks are smaller so
they stay in cache). Here the function takes one more argument per output, `_o0, _o1, ...` (None by
default: the function then returns fresh values as before), and each output's chain of last
operations, from the top of its expression down the left operand, runs in that destination:

    x1*_a0 + x5        ->  store(_o0, add, store(_o0, multiply, x1, _a0), x5)
    -x4*sin(_a0)       ->  store(_o12, multiply, store(_o12, negative, x4), sin(_a0))

`kernels.store` calls the same ufunc the operator or function name would, with `out=`: the same
loop on the same operands in the same order, so every value is bit for bit what it was. A
destination aliases nothing the code reads, so writing it while the rest of the expression is still
to come is safe. Where numpy cannot write a result into a float64 column (complex or object values)
`store` returns it fresh, and evaluation converts it as before. Only `+ - * /`, unary minus and
the namespace's numpy ufuncs are rewritten; `**` keeps numpy's operator (its fast paths for small
exponents are not those of `np.power`).
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
_STORE = "store"


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
    ufuncs = {name: value.nin for name, value in namespace.items() if isinstance(value, np.ufunc)}
    returned = function.body[-1]
    value = returned.value
    if isinstance(value, (ast.List, ast.Tuple)) and outputs != 1:
        value.elts = [_into(element, name, ufuncs) for element, name in zip(value.elts, names, strict=True)]
    elif value is not None and outputs == 1:
        returned.value = _into(value, names[0], ufuncs)
    else:
        raise RuntimeError(f"lambdify's code does not return {outputs} values")  # a bug
    return ast.fix_missing_locations(module)


def _into(node: ast.expr, out: str, ufuncs: Mapping[str, int]) -> ast.expr:
    """`node` computed in `out` along its left spine, where the operation is a ufunc's."""
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return _store(out, OPERATORS[type(node.op)], _into(node.left, out, ufuncs), node.right)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _store(out, OPERATORS[ast.USub], _into(node.operand, out, ufuncs))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and len(node.args) == ufuncs.get(node.func.id)  # more would be read as `out`
        and not node.keywords
        and not any(isinstance(arg, ast.Starred) for arg in node.args)
    ):
        first, *rest = node.args
        return _store(out, node.func.id, _into(first, out, ufuncs), *rest)
    return node


def _store(out: str, ufunc: str, *operands: ast.expr) -> ast.expr:
    load = ast.Load()
    return ast.Call(ast.Name(_STORE, load), [ast.Name(out, load), ast.Name(ufunc, load), *operands], [])
