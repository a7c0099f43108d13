"""vpd_jax: Variational Policy Distillation for LLMs in JAX.

One network, two roles: the student pi(y|x) and the teacher q(y|x, C), the
same weights with textual feedback C in the prompt. See README.md.
"""

__version__ = "0.1.0"
