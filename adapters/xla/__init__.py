"""optcheck's own XLA-compiled implementations of the golden semantics.

One functional core (:mod:`.core`) written against a small array namespace
(:mod:`.ops`) runs under two front-ends:

* :mod:`.jax_backend` — a functional API (``init`` / ``update`` over lists of arrays)
  compiled with ``jax.jit``, buffers donated, hyper-parameters traced;
* :mod:`.tf_backend` — an ``Optimizer`` on ``tf.Variable``\\ s with the seed page's API
  whose whole apply step (every variable, clipping, weight decay, EMA and the counter)
  is one ``tf.function(jit_compile=True)``.

Host-side work — constructor validation, ``get_config`` / ``from_config``, schedules —
is the golden's own (:mod:`optcheck.reference`): the arguments mean exactly what the
reference says, and only the per-step arithmetic is re-implemented for XLA.
"""

import os

#: XLA options the golden semantics need. ``xla_allow_excess_precision`` (on by default)
#: lets XLA's GPU compiler drop a round trip such as float64 → float32 → float64 and
#: keep bfloat16 / float16 arithmetic in float32: both break Keras's casting rules
#: (``tf.cast`` of a Python hyper-parameter goes via float32; bfloat16 overflows). Found
#: by the conformance suite on an H100 (float64 SGD momentum off by 1e-8 relative).
FLAGS = ("--xla_allow_excess_precision=false",)

#: Opt-in (``OPTCHECK_XLA_CPU_FUSION=1`` in the environment, or
#: ``set_xla_flags(CPU_FUSION)``, before JAX or TensorFlow starts XLA): XLA:CPU's
#: multi-output fusion, an experimental backend option that is off by default. With it
#: sibling element-wise loops fuse into one loop with several outputs and the core's
#: step reads and writes each array once (:func:`.core._fused_tail`); without it the
#: core traces the plain step (same values, one loop per array written). Never set
#: silently: with jaxlib 0.10.2 and TensorFlow 2.21 it aborts the process when a
#: program has a scatter (``x.at[i].add(v)`` beside another use of ``x``; TensorFlow's
#: sparse-gradient updates) — a check failure in XLA's loop emitter, measured.
CPU_FUSION = "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion"
CPU_FUSION_ENV = "OPTCHECK_XLA_CPU_FUSION"


def set_xla_flags(*extra: str) -> None:
    """Add :data:`FLAGS` (and ``extra``; :data:`CPU_FUSION` too when the environment
    sets ``OPTCHECK_XLA_CPU_FUSION=1``) to ``XLA_FLAGS``; effective before JAX or
    TensorFlow first initialises XLA."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get(CPU_FUSION_ENV, "") == "1":
        extra = (*extra, CPU_FUSION)
    for flag in FLAGS + extra:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
