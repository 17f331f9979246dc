"""Generated numeric code that computes each output in the caller's column instead of a fresh array.

lambdify's function returns one fresh array per output, which evaluation then copied into the reply's
column, chunk by chunk: for a 4x4 Jacobian 20 copies per chunk. Here the function takes one more
argument per output, `_o0, _o1, ...` (None by default), and where an output's last operation is a
ufunc's, it calls that ufunc with `out=` its argument:

    _a0*x1 + x5        ->  add(_a0*x1, x5, out=_o0)
    -x4*sin(_a0)       ->  multiply(-x4, sin(_a0), out=_o12)

The operator called the same ufunc: the same loop on the same operands, so every value is bit for
bit what it was; with `out=None` numpy allocates as the operator did. Where numpy cannot write a
value into a float64 column (complex) it refuses with a TypeError before writing, and evaluation
computes the chunk again without destinations (`numeric._computed`). Only `+ - * /`, unary minus and
the namespace's one-output ufuncs are rewritten; `**` keeps numpy's operator (its fast paths for
small exponents are not `np.power`'s). A kernel that patches a value at a few points (`PATCHING`:
`taylor_near(u, reach, direct, ...)`) gets `out=` too, and the value it patches is computed there:

    taylor_near(u, r, x3 - 1.0, c, True, 0)
        ->  taylor_near(u, r, subtract(x3, 1.0, out=_o0), c, True, 0, out=_o0)

Each output of several is assigned on a line of its own (`_r0 = ...`), so an operation that overflows
is told apart by its line (`programs.feeds`). The rewrite is textual, on lambdify's source, and only
the return statement is parsed: the code is
compiled from text as lambdify compiles it, so an expression nested as deep as lambdify accepts
still compiles (an AST rebuilt in Python recurses once per level: a sum of 1,200 terms failed), and
where even the return statement is too deep to parse the outputs are returned fresh as before.

Measured and left out (bench/README.md, `jacobian.py`): computing more of each output in its column
(the chain of first operands) or writing operations on temporaries into them: no gain at 10^5
points (numpy's allocator hands back the block just freed, still in cache), bytecode longer by a
third for long sums, and numpy writes a one-element array over itself three times slower than
anew, which the single-point path would pay.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from chainrule.engine import removable

__all__ = ["OPERATORS", "PATCHING", "RESULT", "rewrite"]

# Kernels taking `out=` whose value is one of their arguments (at this position) patched at a few
# points: that argument is computed into the output, and the kernel patches it in place.
PATCHING: Mapping[str, int] = {removable.KERNEL: 2}
# The namespace names of the ufuncs the operators call (`kernels.NAMESPACE` holds them).
OPERATORS: Mapping[type[ast.AST], str] = {
    ast.Add: "add",
    ast.Sub: "subtract",
    ast.Mult: "multiply",
    ast.Div: "divide",
    ast.USub: "negative",
}
_RETURN = "    return "
# Output k of a function of several is assigned to RESULT + k, each on its own line.
RESULT = "_r"


def rewrite(source: str, outputs: int, namespace: Mapping[str, Any]) -> str:
    """lambdify's `source` (a function whose last line returns `outputs` values, in a list unless
    one) with an output argument per value, defaulting to None, and the last operations of the
    values writing into them."""
    lines = source.rstrip("\n").split("\n")
    header, body, returned = lines[0], lines[1:-1], lines[-1]
    if not (header.startswith("def ") and header.endswith("):") and returned.startswith(_RETURN)):
        raise RuntimeError("lambdify's code is not one function ending in a one-line return")  # a bug
    names = [f"_o{index}" for index in range(outputs)]
    arguments = [header[header.index("(") + 1 : -2], *(f"{name}=None" for name in names)]
    header = f"{header[: header.index('(')]}({', '.join(argument for argument in arguments if argument)}):"
    expression = returned[len(_RETURN) :]
    ufuncs = {name: f.nin for name, f in namespace.items() if isinstance(f, np.ufunc) and f.nout == 1}
    written = _written(expression, names, ufuncs)
    if written is None:
        return "\n".join([header, *body, _RETURN + expression]) + "\n"
    if isinstance(written, str):  # one value, not in a list
        return "\n".join([header, *body, _RETURN + written]) + "\n"
    # One output a line: an overflow is told apart by the line it happened on (`programs.feeds`).
    results = [f"{RESULT}{index}" for index in range(outputs)]
    assigned = [f"    {result} = {value}" for result, value in zip(results, written, strict=True)]
    return "\n".join([header, *body, *assigned, f"{_RETURN}[{', '.join(results)}]"]) + "\n"


def _written(expression: str, names: list[str], ufuncs: Mapping[str, int]) -> str | list[str] | None:
    """The returned `expression`'s value (or each of its list of values) with its last ufunc writing
    into its output argument, or None where it is too deep to parse here."""
    try:
        tree = ast.parse(expression, mode="eval").body
    except (RecursionError, MemoryError):
        return None
    line = expression.encode()  # one line, and the parser's offsets count its UTF-8 bytes
    if not isinstance(tree, ast.List):
        if len(names) != 1:
            raise RuntimeError(f"lambdify's code does not return {len(names)} values")  # a bug
        return _into(line, tree, names[0], ufuncs)
    return [_into(line, node, name, ufuncs) for node, name in zip(tree.elts, names, strict=True)]


def _into(line: bytes, node: ast.expr, out: str, ufuncs: Mapping[str, int]) -> str:
    """The text of `node` (part of `line`), its last operation writing into `out` if a ufunc's."""
    called = _called(node)
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        ufunc, operands = OPERATORS[type(node.op)], [node.left, node.right]
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        ufunc, operands = OPERATORS[ast.USub], [node.operand]
    elif called is not None and len(called.args) == ufuncs.get(called.name):  # more would be `out`
        ufunc, operands = called.name, called.args
    elif called is not None and PATCHING.get(called.name, len(called.args)) < len(called.args):
        patched = PATCHING[called.name]
        arguments = [
            _into(line, arg, out, ufuncs) if index == patched else _text(line, arg)
            for index, arg in enumerate(called.args)
        ]
        return f"{called.name}({', '.join(arguments)}, out={out})"
    else:
        return _text(line, node)
    return f"{ufunc}({', '.join(_text(line, operand) for operand in operands)}, out={out})"


class _Call(NamedTuple):
    name: str
    args: list[ast.expr]


def _called(node: ast.expr) -> _Call | None:
    """A call of a name with positional arguments only (where `out=` can be added), else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and not node.keywords
        and not any(isinstance(arg, ast.Starred) for arg in node.args)
    ):
        return _Call(node.func.id, node.args)
    return None


def _text(line: bytes, node: ast.expr) -> str:
    """The source of `node` (not `ast.get_source_segment`: it splits the whole text at every call)."""
    if node.end_col_offset is None or node.lineno != 1 or node.end_lineno != 1:  # a bug
        raise RuntimeError("a returned value is not on the return's one line")
    return line[node.col_offset : node.end_col_offset].decode()
