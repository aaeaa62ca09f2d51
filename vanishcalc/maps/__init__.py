"""Mean-field layers that compose: ``Dense``, ``Activation``, ``BatchNorm``, ``LayerNorm``,
``RBF`` (distance units), ``serial``, ``repeat``, ``Residual``, ``Dropout``; and ``RNNMeanField``
for recurrence.

>>> from vanishcalc.maps import Activation, Dense, repeat, serial
>>> net = repeat(serial(Activation("tanh"), Dense(1.5, 0.1)), 3)
"""
from .activation import Activation, Nonlinearity
from .combinators import Repeat, Serial, repeat, serial
from .dense import Dense
from .dropout import Dropout
from .layer import Layer
from .norm import BatchNorm, LayerNorm
from .rbf import RBF
from .residual import Residual, post_norm_block, pre_norm_block
from .rnn import RNNMeanField
from .state import MomentState

__all__ = ["Activation", "BatchNorm", "Dense", "Layer", "LayerNorm", "MomentState",
           "Nonlinearity", "RBF", "RNNMeanField", "Repeat", "Serial", "repeat", "serial",
           "Dropout", "Residual", "post_norm_block", "pre_norm_block"]
