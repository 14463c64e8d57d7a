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
