"""Independent oracles for the test suite: mpmath quadrature and cited closed forms.

Nothing here imports vanishcalc; every reference is computed from definitions written
in the tests (expressions and kink lists), never from the library's own output.
"""
