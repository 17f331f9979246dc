"""The engine: chainrule's pure maths library (parse, differentiate, evaluate, explain, verify, codegen).

It imports sympy, numpy, scipy and mpmath only: no request, no configuration, no transport. The
server runs it in its symbolic workers (killable processes) and threads; the CLI runs it in process.
"""

from chainrule.engine.symbolic import (
    DEFAULT_LIMITS,
    CompiledFunction,
    CompiledGradient,
    EngineLimits,
    EvaluationResult,
    GradientResult,
    Portable,
    Simplification,
    canonical_key,
    compile_function,
    compile_gradient,
    derivative,
    differentiate,
    evaluate,
    expression_size,
    free_variables,
    gather_columns,
    gradient,
    gradient_components,
    resolve_wrt,
    resolved,
    simplify,
    to_latex,
)

__all__ = [
    "DEFAULT_LIMITS",
    "CompiledFunction",
    "CompiledGradient",
    "EngineLimits",
    "EvaluationResult",
    "GradientResult",
    "Portable",
    "Simplification",
    "canonical_key",
    "compile_function",
    "compile_gradient",
    "derivative",
    "differentiate",
    "evaluate",
    "expression_size",
    "free_variables",
    "gather_columns",
    "gradient",
    "gradient_components",
    "resolve_wrt",
    "resolved",
    "simplify",
    "to_latex",
]
