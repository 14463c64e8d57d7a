"""A NumPy-backed ``tf.Variable``: value, dtype, name, assign ops, arithmetic.

The arithmetic operators read the variable's value, so the seed page's examples
run almost verbatim (``loss = lambda: 3 * var1 * var1 + 2 * var2 * var2``).
Inside a :class:`~optcheck.reference.autodiff.GradientTape` a read returns the
tape's traced value, which is how gradients are taken.

Construction follows ``tf.Variable``: a Python float (or nested list of floats)
becomes float32, a Python int int32, a NumPy array keeps its dtype unless
``dtype`` is given.
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np

from . import dtypes

_ids = itertools.count(1)


def _initial_array(initial_value, dtype) -> np.ndarray:
    if isinstance(initial_value, Variable):
        initial_value = initial_value.numpy()
    if callable(initial_value):
        initial_value = initial_value()
    if dtype is not None:
        # An explicit dtype is a request to convert, as in tf.constant(value, dtype).
        return dtypes.wrap(np.array(initial_value, dtype=dtypes.as_dtype(dtype)))
    if isinstance(initial_value, np.ndarray | np.generic):
        arr = np.array(initial_value)
    else:
        arr = np.array(initial_value)
        if arr.dtype == np.float64:
            arr = arr.astype(dtypes.FLOATX)
        elif arr.dtype.kind == "i":
            arr = arr.astype(dtypes.int32)
    dtypes.as_dtype(arr.dtype)  # raises TypeError for unsupported dtypes
    return arr


class Variable:
    """A mutable, named array of a fixed dtype and shape.

    Args:
        initial_value: array-like, or a callable returning one.
        dtype: optional dtype (name or NumPy dtype).
        name: the variable's name; defaults to ``"Variable"`` as in TensorFlow.
        trainable: whether an optimizer may train it.
        constraint: optional callable applied after each optimizer update
            (``v.assign(constraint(v))``).
    """

    # NumPy arrays defer binary operators to the variable (``x @ kernel`` with x an
    # ndarray must read the kernel through the tape, not as a constant array).
    __array_ufunc__ = None

    def __init__(self, initial_value, dtype=None, name=None, trainable=True, constraint=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Variable name must be a str. Received: name={name!r}")
        if constraint is not None and not callable(constraint):
            raise TypeError(f"constraint must be callable. Received: constraint={constraint!r}")
        self._value = _initial_array(initial_value, dtype)
        self.name = name or "Variable"
        self.trainable = bool(trainable)
        self.constraint = constraint
        # Keras 3 (float8 training): the optimizer assigns the gradient to the variable.
        self.overwrite_with_gradient = False
        self._unique_id = next(_ids)

    # -- value access -------------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        return self._value.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return self._value.shape

    @property
    def ndim(self) -> int:
        return self._value.ndim

    def numpy(self):
        """A copy of the value (a NumPy scalar for a 0-d variable, as TensorFlow returns)."""
        value = self._value.copy()
        return value[()] if value.ndim == 0 else value

    def value(self):
        """The value as used in computations: a traced value inside a tape."""
        from .autodiff import _read

        return _read(self)

    def __array__(self, dtype=None, copy=None):
        arr = self._value
        return arr.astype(dtype) if dtype is not None else arr.copy()

    # -- assignment ---------------------------------------------------------------------
    def _coerce(self, value, op: str) -> np.ndarray:
        if isinstance(value, Variable):
            value = value._value
        if isinstance(value, np.ndarray | np.generic):
            arr = dtypes.wrap(np.asanyarray(value))
            if arr.dtype != self.dtype:
                raise TypeError(
                    f"{op} to variable '{self.name}' ({dtypes.dtype_name(self.dtype)}) "
                    f"got a value of dtype {dtypes.dtype_name(arr.dtype)}."
                )
        elif isinstance(value, numbers.Number | list | tuple):
            arr = np.array(value, dtype=self.dtype)
        else:
            raise TypeError(
                f"{op} to variable '{self.name}' got an unsupported value of type "
                f"{type(value).__name__}."
            )
        if arr.shape != self.shape:
            raise ValueError(
                f"{op} to variable '{self.name}' of shape {self.shape} got a value of "
                f"shape {arr.shape}."
            )
        return arr

    def assign(self, value) -> Variable:
        self._value = self._coerce(value, "assign").copy()
        return self

    def assign_add(self, delta) -> Variable:
        self._value = self._value + self._coerce(delta, "assign_add")
        return self

    def assign_sub(self, delta) -> Variable:
        self._value = self._value - self._coerce(delta, "assign_sub")
        return self

    # -- arithmetic: operate on the (possibly traced) value -----------------------------
    def __neg__(self):
        return -self.value()

    def __pos__(self):
        return self.value()

    def __abs__(self):
        return abs(self.value())

    def __getitem__(self, index):
        return self.value()[index]

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d variable")
        return self.shape[0]

    def __bool__(self):
        return bool(self._value)

    def __float__(self):
        return float(self._value)

    def __repr__(self):
        return (
            f"<Variable '{self.name}' shape={self.shape} "
            f"dtype={dtypes.dtype_name(self.dtype)}, numpy={self._value!r}>"
        )


def _binary(op):
    def forward(self, other):
        other = other.value() if isinstance(other, Variable) else other
        return op(self.value(), other)

    def reverse(self, other):
        return op(other, self.value())

    return forward, reverse


for _name, _op in {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "truediv": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "matmul": lambda a, b: a @ b,
}.items():
    _fwd, _rev = _binary(_op)
    setattr(Variable, f"__{_name}__", _fwd)
    setattr(Variable, f"__r{_name}__", _rev)

for _name, _op in {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}.items():
    setattr(Variable, f"__{_name}__", _binary(_op)[0])
