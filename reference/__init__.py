"""optcheck.reference: the NumPy golden implementation of the Keras optimizer API.

Importing it loads NumPy, ml_dtypes and autograd only — never TensorFlow, JAX
or torch.
"""

from . import dtypes, schedules
from .autodiff import GradientTape
from .optimizer import DEFAULT, Optimizer
from .optimizers import deserialize, get, serialize
from .optimizers.adadelta import Adadelta
from .optimizers.adafactor import Adafactor
from .optimizers.adagrad import Adagrad
from .optimizers.adam import Adam
from .optimizers.adamax import Adamax
from .optimizers.adamw import AdamW
from .optimizers.ftrl import Ftrl
from .optimizers.lion import Lion
from .optimizers.nadam import Nadam
from .optimizers.rmsprop import RMSprop
from .optimizers.sgd import SGD
from .profiles import KERAS2, KERAS3, PROFILES, Profile, get_profile
from .run import NUMERICS, StepRecord, run
from .sparse import IndexedSlices, PerReplica
from .variable import Variable

__all__ = [
    "DEFAULT",
    "KERAS2",
    "KERAS3",
    "NUMERICS",
    "PROFILES",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Ftrl",
    "GradientTape",
    "IndexedSlices",
    "Lion",
    "Nadam",
    "Optimizer",
    "PerReplica",
    "Profile",
    "RMSprop",
    "StepRecord",
    "Variable",
    "deserialize",
    "dtypes",
    "get",
    "get_profile",
    "run",
    "schedules",
    "serialize",
]
