"""Gradients for ``compute_gradients``, ``minimize`` and a ``GradientTape``.

Derivatives come from `autograd <https://github.com/HIPS/autograd>`_: while a tape
is recording, every read of a :class:`~optcheck.reference.variable.Variable`
returns an autograd box rooted at that variable, so ordinary NumPy / operator
code builds autograd's graph. ``tape.gradient(target, sources)`` then runs
autograd's reverse pass from ``target`` and collects the gradient reaching each
source's root; a source the target does not depend on gets ``None``, as in
TensorFlow. A non-scalar target is differentiated as its sum (seed of ones).
"""

from __future__ import annotations

import contextlib

import numpy as np
from autograd.core import VJPNode, add_outgrads, toposort, vspace
from autograd.numpy.numpy_boxes import ArrayBox
from autograd.tracer import Box, getval, isbox, new_box, trace_stack

_recording: list[GradientTape] = []


class _VariableAwareBox(ArrayBox):
    """An autograd box whose operators read Variable operands.

    ``box * variable`` would otherwise reach NumPy with the Variable as a constant
    (autograd's ArrayBox operators do not defer to the right operand), and the
    gradient through the second factor of ``3 * var1 * var1`` would be lost.
    """

    __slots__ = ()


def _reads_variables(name):
    base = getattr(ArrayBox, name)

    def op(self, other):
        from .variable import Variable

        if isinstance(other, Variable):
            other = other.value()
        return base(self, other)

    op.__name__ = name
    return op


for _op in ("add", "sub", "mul", "pow", "truediv", "matmul", "mod"):
    for _name in (f"__{_op}__", f"__r{_op}__"):
        setattr(_VariableAwareBox, _name, _reads_variables(_name))
for _name in ("__eq__", "__ne__", "__gt__", "__ge__", "__lt__", "__le__"):
    setattr(_VariableAwareBox, _name, _reads_variables(_name))
_VariableAwareBox.__hash__ = ArrayBox.__hash__
_ARRAY_VALUE_TYPES = [
    t for t, cls in Box.type_mappings.items() if cls is ArrayBox and t is not ArrayBox
]


@contextlib.contextmanager
def _variable_aware_boxes():
    """Box array values as :class:`_VariableAwareBox` while a tape records."""
    saved = {t: Box.type_mappings[t] for t in _ARRAY_VALUE_TYPES}
    for t in _ARRAY_VALUE_TYPES:
        _VariableAwareBox.register(t)
    try:
        yield
    finally:
        Box.type_mappings.update(saved)


def _read(variable):
    """Value of ``variable`` as seen by the innermost recording tape."""
    if _recording:
        return _recording[-1]._watch_read(variable)
    return variable._value


class GradientTape:
    """Record operations on variables to differentiate them (``tf.GradientTape``).

    Usable as in the seed page::

        with GradientTape() as tape:
            loss = 3 * var1 * var1 + 2 * var2 * var2
        grads = tape.gradient(loss, [var1, var2])

    As in TensorFlow, a non-persistent tape computes gradients once.
    """

    def __init__(self, persistent: bool = False):
        self._persistent = persistent
        self._boxes: dict[int, tuple[object, object]] = {}
        self._trace_ctx = None
        self._trace = None
        self._used = False

    def __enter__(self):
        if self._trace_ctx is not None:
            raise RuntimeError("This GradientTape is already recording.")
        self._trace_ctx = contextlib.ExitStack()
        self._trace_ctx.enter_context(_variable_aware_boxes())
        self._trace = self._trace_ctx.enter_context(trace_stack.new_trace())
        _recording.append(self)
        return self

    def __exit__(self, *exc):
        _recording.remove(self)
        ctx, self._trace_ctx = self._trace_ctx, None
        ctx.__exit__(*exc)
        return False

    def watch(self, variables) -> None:
        """Start tracing ``variables`` (reads are traced anyway)."""
        if self._trace_ctx is None:
            raise RuntimeError("GradientTape.watch() must be called while the tape records.")
        for v in variables if isinstance(variables, list | tuple) else [variables]:
            self._watch_read(v)

    def _watch_read(self, variable):
        key = variable._unique_id
        if key not in self._boxes:
            node = VJPNode.new_root()
            self._boxes[key] = (new_box(variable._value, self._trace, node), node)
        return self._boxes[key][0]

    def gradient(self, target, sources):
        """Gradients of ``target`` (summed if not scalar) with respect to ``sources``.

        Returns a list (or a single value if ``sources`` is one variable) holding,
        for each source, an array of the source's shape, or ``None`` when the
        target does not depend on it.
        """
        if self._used and not self._persistent:
            raise RuntimeError(
                "A non-persistent GradientTape can only be used to compute one set of "
                "gradients (or jacobians)."
            )
        self._used = True
        single = not isinstance(sources, list | tuple)
        source_list = [sources] if single else list(sources)
        from .variable import Variable

        for i, s in enumerate(source_list):
            if not isinstance(s, Variable):
                raise TypeError(f"sources[{i}] must be a Variable. Received: {type(s).__name__}")
        grads = self._reverse(target)
        out = []
        for s in source_list:
            entry = self._boxes.get(s._unique_id)
            g = grads.get(entry[1]) if entry else None
            out.append(None if g is None else np.asarray(g).astype(s.dtype, copy=False))
        return out[0] if single else out

    def _reverse(self, target) -> dict:
        if not (isbox(target) and target._trace == self._trace):
            return {}
        seed = vspace(getval(target)).ones()
        outgrads = {target._node: (seed, False)}
        roots = {}
        for node in toposort(target._node):
            if node not in outgrads:
                continue
            outgrad = outgrads.pop(node)
            if not node.parents:
                roots[node] = outgrad[0]
                continue
            for parent, ingrad in zip(node.parents, node.vjp(outgrad[0]), strict=True):
                outgrads[parent] = add_outgrads(outgrads.get(parent), ingrad)
        return roots


def value_and_gradients(loss, var_list):
    """Evaluate the zero-argument callable ``loss`` and its gradients w.r.t. ``var_list``."""
    with GradientTape() as tape:
        tape.watch(list(var_list))
        value = loss()
    return getval(value), tape.gradient(value, list(var_list))


@contextlib.contextmanager
def stop_recording():
    """Suspend every recording tape (the optimizer's own updates are not traced)."""
    saved = list(_recording)
    _recording.clear()
    try:
        yield
    finally:
        _recording.extend(saved)
