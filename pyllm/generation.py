"""Token choice for generation, exposed for users and tests.

The C core owns the sampler (greedy argmax, or temperature -> top-k -> top-p then a draw,
the order transformers applies its warpers in) and its seeded xoshiro256** stream; this
module is its Python face.
"""
from . import _core


def sample_logits(logits, *, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, seed=0, num_samples=1):
    """Draw ``num_samples`` token ids (``np.int64``) from one row of logits.

    ``logits`` is a 1-D floating-point array (cast to float32); ``-inf`` marks a banned
    token, NaN and ``+inf`` are refused. ``do_sample=False`` or ``temperature=0`` gives the
    argmax (the first one on ties) every time. Otherwise the logits are divided by
    ``temperature``, cut to the ``top_k`` best (0: off; ties at the cut are kept) and to the
    smallest prefix holding ``top_p`` of the probability mass (1: off), then sampled. All
    draws come from one random stream seeded once with ``seed``, so a seed fixes the result.
    """
    return _core.sample_logits(logits, do_sample=do_sample, temperature=temperature, top_k=top_k,
                               top_p=top_p, seed=seed, num_samples=num_samples)
