"""capigate's tests. They run the Python, whatever is built: a build in the environment
(``capigate native build``) would otherwise load at the first ``import capigate``, and compiled
classes take no patches. tests/test_native.py runs the compiled modules, in child processes
that ask for them; ``CAPIGATE_NATIVE=1 ./scripts/test`` runs the whole suite compiled."""

import os

os.environ.setdefault("CAPIGATE_NATIVE", "0")
