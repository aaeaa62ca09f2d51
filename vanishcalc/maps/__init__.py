"""Mean-field layers that compose: ``Dense``, ``Activation``, ``serial``, ``repeat``.

>>> from vanishcalc.maps import Activation, Dense, repeat, serial
>>> net = repeat(serial(Activation("tanh"), Dense(1.5, 0.1)), 3)
"""
from .activation import Activation, Nonlinearity
from .combinators import Repeat, Serial, repeat, serial
from .dense import Dense
from .layer import Layer
from .state import MomentState

__all__ = ["Activation", "Dense", "Layer", "MomentState", "Nonlinearity", "Repeat", "Serial",
           "repeat", "serial"]
