"""--format=torchvision: tlx CNN variables as a torchvision state dict that torchvision's model
loads strictly and that gives tlx's logits (eval mode, BatchNorm statistics included)."""

import jax
import numpy as np
import pytest

from tests.models.equivalence import assert_close
from tlx.errors import InputError
from tlx.export.torchvision import export_torchvision
from tlx.models.resnet import ResNet
from tlx.tree import flatten


def perturbed(variables, seed=0):
    """Random-init variables with non-trivial BatchNorm statistics (init's are 0 and 1)."""
    rng = np.random.default_rng(seed)
    stats = flatten(variables.get("batch_stats", {}))
    for path, value in stats.items():
        noise = (
            rng.uniform(0.5, 1.5, value.shape)
            if path.endswith("var")
            else rng.normal(0, 0.1, value.shape)
        )
        stats[path] = np.asarray(noise, np.float32)
    return {"params": flatten(variables["params"]), "batch_stats": stats}


def test_exported_state_dict_gives_tlx_logits_in_torchvision(tmp_path):
    """ResNet's table here; MobileNetV2's through a trained run below."""
    import torch
    import torchvision
    from safetensors.torch import load_file

    from tlx.tree import unflatten

    module = ResNet(depth=18, num_classes=5)
    image = np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32)
    variables = perturbed(module.init(jax.random.key(0), image, train=False))
    (path,) = export_torchvision(variables, module, 5, tmp_path)
    net = torchvision.models.resnet18(num_classes=5).eval()
    net.load_state_dict(load_file(str(path)), strict=True)
    tree = {c: unflatten(v) for c, v in variables.items()}
    ours = np.asarray(module.apply(tree, image, train=False))
    with torch.no_grad():
        theirs = net(torch.from_numpy(image.transpose(0, 3, 1, 2))).numpy()
    # float32 in two frameworks' convolution kernels: reassociation only, relative 1e-5
    assert_close(ours, theirs, rtol=1e-5)


def test_an_architecture_torchvision_lacks_is_refused(tmp_path):
    from tlx.models.small_cnn import SmallCNN

    module = SmallCNN(num_classes=3)
    with pytest.raises(InputError, match="mobilenet_v2, resnet and vgg"):
        export_torchvision({"params": {}, "batch_stats": {}}, module, 3, tmp_path)


def test_a_trained_image_run_exports_through_the_command(image_data_dir, tmp_path):
    """python -m tlx.export --format=torchvision on a run: its selected checkpoint, BatchNorm
    statistics included, gives the run's logits in torchvision."""
    import torch
    import torchvision
    from safetensors.torch import load_file

    from configs import mnv2_fmnist_scratch
    from tests.test_image_training import small
    from tlx.experiment import build_experiment
    from tlx.export import export_run
    from tlx.predict import load_run
    from tlx.trainer import train

    config = small(mnv2_fmnist_scratch.get_config(), image_data_dir, batchnorm="train")
    train(build_experiment(config), tmp_path / "run", log=lambda *_: None, progress=False)
    (path,) = export_run(tmp_path / "run", "torchvision", tmp_path / "tv")
    experiment, params, model_state = load_run(tmp_path / "run")
    image = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
    ours, _ = experiment.model.forward(params, model_state, {"image": image}, None, False)
    net = torchvision.models.mobilenet_v2(num_classes=len(experiment.label_names)).eval()
    net.load_state_dict(load_file(str(path)), strict=True)
    with torch.no_grad():
        theirs = net(torch.from_numpy(image.transpose(0, 3, 1, 2))).numpy()
    assert_close(np.asarray(ours), theirs, rtol=1e-5)
