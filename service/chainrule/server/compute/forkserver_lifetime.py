"""Imported by the forkserver alone (`pool.py` preloads it first): the forkserver dies with the
server process that started it, and with it every symbolic worker (`lifetime.die_with_parent`).

multiprocessing's forkserver outlives that process (re-parented to init), and so did a worker in the
middle of a task: with nobody to stop it at its budget, it computed on (an attack hunt, 2026-12-05).
Never import it anywhere else: in the server process it would tie the server to its own parent.
"""

from __future__ import annotations

import os

from chainrule.server.compute import lifetime

lifetime.die_with_parent(os.getppid())
