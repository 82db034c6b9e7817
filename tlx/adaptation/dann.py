"""DANN (Ganin et al. 2016): a domain classifier on a named endpoint's features, behind a
gradient-reversal layer, trained to tell source from target while the features learn to fool it.

The classifier is a parameter group of its own, `domain_classifier` (an MLP with `adapt.
domain_hidden` units, two hidden layers, as TLlib's), placed just below the head: `finetune`
trains it with everything, `feature_extraction` (head=2) with the head. Its parameters are fresh
at the start of an adaptation, also under `init_from` a source run that never had them. The
reversal's coefficient follows Ganin's schedule, ``2 / (1 + exp(-10 p)) - 1`` with p the share of
the run done: 0 at the start (the classifier learns first), near 1 at the end.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from tlx.adaptation.mixed import example_batch, input_keys, mixed_forward, pooled

GROUP = "domain_classifier"


@jax.custom_vjp
def gradient_reversal(x: jax.Array, coefficient: jax.Array) -> jax.Array:
    """Identity forward; backward, the gradient times -coefficient (none flows to it)."""
    return x


def _reversal_forward(x, coefficient):
    return x, coefficient


def _reversal_backward(coefficient, g):
    return -coefficient * g, jnp.zeros_like(coefficient)


gradient_reversal.defvjp(_reversal_forward, _reversal_backward)


def ganin_coefficient(progress: jax.Array) -> jax.Array:
    """Ganin's schedule: 2 / (1 + exp(-10 p)) - 1 for p in [0, 1]."""
    return 2.0 / (1.0 + jnp.exp(-10.0 * progress)) - 1.0


class DomainClassifier(nn.Module):
    hidden: int = 256

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        x = nn.relu(nn.Dense(self.hidden, name="dense_1")(features))
        x = nn.relu(nn.Dense(self.hidden, name="dense_2")(x))
        return nn.Dense(1, name="out")(x)[:, 0]


def with_domain_classifier(bundle, endpoint: str, hidden: int, total_steps: int, feature_dim: int):
    """The bundle with the domain classifier added: its init, group and train forward."""
    classifier = DomainClassifier(hidden)
    groups = list(bundle.groups)
    groups.insert(len(groups) - 1, (GROUP, f"^{GROUP}/"))

    def init(rng):
        variables = bundle.init(rng)
        features = jnp.zeros((1, feature_dim), jnp.float32)
        extra = classifier.init(jax.random.fold_in(rng, 1), features)["params"]
        return {**variables, "params": {**variables["params"], GROUP: extra}}

    def forward_for_stage(trainable):
        stage_forward = bundle.forward_for_stage(trainable, endpoint)
        base = mixed_forward(stage_forward, with_features=True, keys=input_keys(bundle))

        def forward(params, model_state, batch, rng, train):
            model_params = {k: v for k, v in params.items() if k != GROUP}
            outputs, model_state = base(model_params, model_state, batch, rng, train)
            if not isinstance(outputs, dict):  # an evaluation batch
                return outputs, model_state
            progress = batch["adapt_step"][0].astype(jnp.float32) / max(total_steps, 1)
            coefficient = ganin_coefficient(jnp.minimum(progress, 1.0))
            for side in ("source", "target"):
                features = gradient_reversal(outputs[f"{side}_features"], coefficient)
                outputs[f"{side}_domain"] = classifier.apply({"params": params[GROUP]}, features)
            return outputs, model_state

        return forward

    def plain_forward(params, model_state, batch, rng, train):
        model_params = {k: v for k, v in params.items() if k != GROUP}
        return bundle.forward(model_params, model_state, batch, rng, train)

    return dataclasses.replace(
        bundle,
        groups=groups,
        init=init,
        forward=plain_forward,
        forward_for_stage=forward_for_stage,
        allow_fresh=(*bundle.allow_fresh, f"^{GROUP}/"),
        added_params=(*bundle.added_params, GROUP),
    )


def feature_dim(bundle, endpoint: str) -> int:
    """The pooled width of the endpoint's activations (traced, nothing computed)."""

    def features(rng):
        variables = bundle.init(rng)
        state = {k: v for k, v in variables.items() if k != "params"}
        forward = bundle.forward_for_stage(bundle.group_names, endpoint)
        (_, activations), _ = forward(variables["params"], state, example_batch(bundle), rng, False)
        return pooled(activations)

    return int(jax.eval_shape(features, jax.random.key(0)).shape[-1])
