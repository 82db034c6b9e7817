"""Transfer plans: which parameter groups train, at what learning-rate multiplier, from which step.

A plan is a list of stages ``[(start_step, {group: lr_multiplier | FROZEN})]``; the first stage starts
at step 0 and every stage names every group. Builders are named after what researchers say:

    feature_extraction(groups)         only the head trains
    finetune(groups)                   everything trains
    freeze_to(groups, k)               the top k groups train
    progressive(groups, every=N)       one more group unfreezes from the top every N steps
    from_rules(groups, [(0, [("head", 1.0), (".*", None)])])   big_vision style, first match wins

``groups`` is the model's ordered group names, input -> output. Per-group learning-rate
multipliers (``lr_multipliers``) and layer-wise decay (``layer_decay``) apply on top of any plan.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from tlx.config_checks import parse_multipliers
from tlx.errors import PlanError
from tlx.ranges import LAYER_DECAY, POSITIVE, POSITIVE_INT, pair_problem
from tlx.spec import PlanSpec

FROZEN = None  # a group's multiplier when it does not train


@dataclasses.dataclass(frozen=True)
class Stage:
    start_step: int
    multipliers: Mapping[str, float | None]  # every group -> lr multiplier, or FROZEN

    @property
    def trainable(self) -> tuple[str, ...]:
        return tuple(g for g, m in self.multipliers.items() if m is not FROZEN)

    @property
    def frozen(self) -> tuple[str, ...]:
        return tuple(g for g, m in self.multipliers.items() if m is FROZEN)


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    stages: tuple[Stage, ...]

    def stage_index_at(self, step: int) -> int:
        index = 0
        for i, stage in enumerate(self.stages):
            if stage.start_step <= step:
                index = i
        return index

    def stage_at(self, step: int) -> Stage:
        return self.stages[self.stage_index_at(step)]

    @property
    def boundaries(self) -> tuple[int, ...]:
        return tuple(s.start_step for s in self.stages)

    def validate(
        self, groups: Sequence[str], total_steps: int | None = None, *, frozen_train: bool = False
    ) -> None:
        """Every stage names exactly the model's groups; stages start in order, inside the run.
        A stage must train some group, unless `frozen_train` (frozen groups train their BatchNorm
        scale and bias: model.frozen_batchnorm 'affine' or 'tent') or the run has 0 steps."""
        problems = []
        if not self.stages or self.stages[0].start_step != 0:
            problems.append("the first stage must start at step 0")
        starts = self.boundaries
        if list(starts) != sorted(set(starts)):
            problems.append(f"stage start steps must strictly increase, found {list(starts)}")
        for i, stage in enumerate(self.stages):
            names = set(stage.multipliers)
            if names != set(groups):
                problems.append(
                    f"stage {i} names groups {sorted(names)}, the model has {list(groups)}"
                )
            if not stage.trainable and not frozen_train and total_steps != 0:
                problems.append(
                    f"stage {i} (step {stage.start_step}) trains no group (to train only the "
                    "frozen groups' BatchNorm scale and bias, set model.frozen_batchnorm to "
                    "'affine' or 'tent')"
                )
            for g, m in stage.multipliers.items():
                if m is not FROZEN and POSITIVE.problem(m) is not None:
                    problems.append(f"stage {i}: group {g!r} has multiplier {m}; use FROZEN or > 0")
            # A run of 0 steps (an adaptation's statistics alone) still has its stage 0.
            if total_steps is not None and stage.start_step >= max(total_steps, 1):
                problems.append(
                    f"stage {i} starts at step {stage.start_step} but the run has only "
                    f"{total_steps} steps, so it would never begin"
                )
        if problems:
            raise PlanError(f"Plan {self.name!r} is invalid:\n  " + "\n  ".join(problems))


def _stage(start: int, groups: Sequence[str], n_trainable: int) -> Stage:
    """The top ``n_trainable`` groups train at multiplier 1, the rest are frozen."""
    cut = len(groups) - n_trainable
    return Stage(start, {g: (1.0 if i >= cut else FROZEN) for i, g in enumerate(groups)})


def _check_top_k(groups: Sequence[str], k: int, plan: str) -> None:
    if not 1 <= k < len(groups):
        raise PlanError(
            f"{plan}: k={k} must be between 1 and {len(groups) - 1} (the model has "
            f"{len(groups)} groups {list(groups)}); k={len(groups)} would freeze nothing, "
            "use finetune for that."
        )


def feature_extraction(groups: Sequence[str], head: int = 1) -> Plan:
    _check_top_k(groups, head, "feature_extraction")
    return Plan("feature_extraction", (_stage(0, groups, head),))


def finetune(groups: Sequence[str]) -> Plan:
    return Plan("finetune", (_stage(0, groups, len(groups)),))


def frozen(groups: Sequence[str]) -> Plan:
    """Every group frozen: with model.frozen_batchnorm 'affine' or 'tent', only BatchNorm's scale
    and bias train (TENT's choice); with any other policy the plan is refused (nothing trains)."""
    return Plan("frozen", (_stage(0, groups, 0),))


def freeze_to(groups: Sequence[str], k: int) -> Plan:
    _check_top_k(groups, k, "freeze_to")
    return Plan(f"freeze_to({k})", (_stage(0, groups, k),))


def progressive(groups: Sequence[str], every: int, start: int = 1) -> Plan:
    """Top ``start`` groups train first; one more group unfreezes every ``every`` steps."""
    _check_top_k(groups, start, "progressive")
    POSITIVE_INT.require(every, "progressive: every", PlanError)
    stages = [_stage(i * every, groups, n) for i, n in enumerate(range(start, len(groups) + 1))]
    return Plan(f"progressive(every={every})", tuple(stages))


def from_rules(
    groups: Sequence[str], stages: Sequence[tuple[int, Sequence[tuple[str, float | None]]]]
) -> Plan:
    """Stages given as ``(start_step, [(group_regex, multiplier | None), ...])``; first match wins.

    Every group must match some rule and every rule must match some group.
    """
    built, problems = [], []
    for start, rules in stages:
        compiled = [(re.compile(rx), rx, m) for rx, m in rules]
        used = set()
        multipliers = {}
        for g in groups:
            hit = next(((rx, m) for c, rx, m in compiled if c.fullmatch(g)), None)
            if hit is None:
                problems.append(f"step {start}: group {g!r} matches no rule")
                continue
            used.add(hit[0])
            multipliers[g] = None if hit[1] is None else float(hit[1])
        problems += [
            f"step {start}: rule {rx!r} matches no group" for _, rx, _ in compiled if rx not in used
        ]
        built.append(Stage(int(start), multipliers))
    if problems:
        raise PlanError(
            f"Plan rules do not fit the model's groups {list(groups)}:\n  " + "\n  ".join(problems)
        )
    return Plan("custom", tuple(built))


def with_multipliers(
    plan: Plan,
    groups: Sequence[str],
    lr_multipliers: Mapping[str, float] | None = None,
    layer_decay: float = 1.0,
    lr_slice: tuple[float, float] | None = None,
) -> Plan:
    """Scale trainable groups' multipliers: regex -> factor, decay**depth from the head, and a
    fastai-style slice (low, high): factors spaced geometrically from `low` on the input group
    to `high` on the head (fastai's ``slice(lr / 100, lr)`` is ``lr_slice=(0.01, 1)``)."""
    lr_multipliers = dict(lr_multipliers or {})
    for rx in lr_multipliers:
        if not any(re.fullmatch(rx, g) for g in groups):
            raise PlanError(
                f"lr_multipliers pattern {rx!r} matches no group; groups are {list(groups)}"
            )
    LAYER_DECAY.require(layer_decay, "layer_decay", PlanError)
    if lr_slice is not None and (problem := pair_problem(lr_slice, POSITIVE)):
        raise PlanError(f"lr_slice={lr_slice} must be {problem}")

    def factor(g: str) -> float:
        depth = len(groups) - 1 - list(groups).index(g)  # 0 for the head
        f = layer_decay**depth
        if lr_slice is not None and len(groups) > 1:
            low, high = lr_slice
            f *= high * (low / high) ** (depth / (len(groups) - 1))
        for rx, m in lr_multipliers.items():
            if re.fullmatch(rx, g):
                f *= float(m)
                break
        return f

    stages = tuple(
        Stage(
            s.start_step,
            {g: (m if m is FROZEN else m * factor(g)) for g, m in s.multipliers.items()},
        )
        for s in plan.stages
    )
    return dataclasses.replace(plan, stages=stages)


def _required(plan: PlanSpec, field: str):
    value = getattr(plan, field)
    if value is None:
        raise PlanError(f"plan.name={plan.name!r} needs plan.{field}; set it in the config.")
    return value


BUILDERS = {
    "feature_extraction": lambda groups, plan: feature_extraction(groups, plan.head),
    "finetune": lambda groups, plan: finetune(groups),
    "frozen": lambda groups, plan: frozen(groups),
    "freeze_to": lambda groups, plan: freeze_to(groups, _required(plan, "k")),
    "progressive": lambda groups, plan: progressive(groups, _required(plan, "every"), plan.start),
    "custom": lambda groups, plan: from_rules(groups, plan.stages),
}


def build_plan(
    groups: Sequence[str],
    plan: PlanSpec | Mapping,
    total_steps: int | None = None,
    *,
    frozen_train: bool = False,
) -> Plan:
    """A plan from a config section: ``name`` plus that builder's fields and the multipliers;
    `frozen_train` as for :meth:`Plan.validate`."""
    spec = PlanSpec.of(plan)
    if spec.name not in BUILDERS:
        raise PlanError(f"Unknown plan {spec.name!r}; choose one of {sorted(BUILDERS)}.")
    built = BUILDERS[spec.name](list(groups), spec)
    built = with_multipliers(
        built,
        groups,
        parse_multipliers(spec.lr_multipliers),
        float(spec.layer_decay),
        tuple(float(x) for x in spec.lr_slice) if spec.lr_slice else None,
    )
    built.validate(groups, total_steps, frozen_train=frozen_train)
    return built
