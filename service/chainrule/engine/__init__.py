"""The engine: chainrule's pure maths library (parse, differentiate, evaluate, explain, verify, codegen).

It imports sympy, numpy, scipy and mpmath only: no request, no configuration, no transport. The
server runs it in its symbolic workers (killable processes) and threads; the CLI runs it in process.
The surface: `parse`/`to_text` (our grammar), differentiation and printing (`differentiate`,
`simplify`, `to_latex`), numeric plans (`compile_function`, `compile_gradient`, `compile_jacobian`,
then `evaluate`, `gradient`, `jacobian`) and `generate_code`; the modules `explain` (chain-rule
steps), `verify` (a numeric self-check), `series` (Taylor polynomials) and `implicit` (implicit
differentiation) are used by name.
"""

from chainrule.engine import symbolic
from chainrule.engine.codegen import generate as generate_code
from chainrule.engine.parsing import parse, to_text
from chainrule.engine.symbolic import *  # noqa: F403 - symbolic's surface (its __all__) is the engine's

__all__ = ["generate_code", "parse", "to_text"]
__all__ += symbolic.__all__
