"""optcheck.reference: the NumPy golden implementation of the Keras optimizer API.

Importing it loads NumPy, ml_dtypes and autograd only — never TensorFlow, JAX
or torch.
"""

from . import dtypes
from .autodiff import GradientTape
from .optimizer import DEFAULT, Optimizer
from .optimizers.adam import Adam
from .optimizers.sgd import SGD
from .profiles import KERAS2, KERAS3, PROFILES, Profile, get_profile
from .sparse import IndexedSlices, PerReplica
from .variable import Variable

__all__ = [
    "DEFAULT",
    "KERAS2",
    "KERAS3",
    "PROFILES",
    "SGD",
    "Adam",
    "GradientTape",
    "IndexedSlices",
    "Optimizer",
    "PerReplica",
    "Profile",
    "Variable",
    "dtypes",
    "get_profile",
]
