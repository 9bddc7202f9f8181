"""The course's laboratory: what the book and notebooks run ``dpo_ref`` on.

Not part of the trainer. ``dpo_ref``'s own modules never import from here, except the
command line's ``toy`` command and ``loading``, which builds the toy model when asked
for ``"toy"``. What lives here: the offline toy model and its world (``toy``,
``toy_architectures``), the ground-truth task of the studies (``reward_task``), pairs
for benchmarks (``synthetic_pairs``), the Preferred-FT baseline (``sft``), measurements
of a trained model (``likelihood``, ``generation``), ``memory``'s estimate of training
memory, the checkers of the exercises (``exercises``) and the claims a page checks and
the seed sweep collects (``findings``).
"""
