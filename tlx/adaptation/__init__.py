"""Transductive transfer: a trained classifier adapted to a shifted target distribution whose
labels it never sees (``config.adapt``).

The same label space, another input distribution, only unlabelled target data. A method is a
declared config choice that composes with the plans and groups of any run:

    none   the source model scored on the target as it is (the source-only row)
    adabn  BatchNorm statistics re-estimated on the target's unlabelled images (Li et al. 2016);
           no parameter changes (`statistics.reestimate_batchnorm`)
    tent   AdaBN's statistics, then the prediction entropy on target batches minimised, updating
           what the plan trains, usually BatchNorm's scale and bias alone
           (model.frozen_batchnorm = "tent", Wang et al. 2021)

`data` builds the target streams and refuses a target whose label names or image channels differ
from the source's; the adaptation loss lives in :mod:`tlx.tasks.adaptation`. Target labels are read
only for the report (the "target_<split>" evaluations at the end): training and checkpoint
selection see the source's validation split or unlabelled target images.
"""
