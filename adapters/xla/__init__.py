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
#:
#: ``xla_cpu_use_multi_output_fusion`` (a backend option, off by default) lets XLA:CPU
#: fuse sibling element-wise loops into one loop with several outputs: the core's step
#: then reads and writes each array once (:func:`.core._fused_tail`). Without it the
#: core falls back to its plain trace (``ops.barrier`` is None).
FLAGS = (
    "--xla_allow_excess_precision=false",
    "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion",
)


def set_xla_flags(*extra: str) -> None:
    """Add :data:`FLAGS` (and ``extra``) to ``XLA_FLAGS``; effective before JAX or
    TensorFlow first initialises XLA."""
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in FLAGS + extra:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
