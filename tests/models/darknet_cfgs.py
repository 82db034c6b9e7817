"""Darknet cfgs for the tests: a YOLOv4-tiny in darknet's layout (Debian's darknet package predates
it) and helpers to shrink any cfg's input size so random-weight comparisons stay cheap."""

import pathlib
import re

DEBIAN_CFG_DIR = pathlib.Path("/usr/share/darknet/cfg")


def conv(filters, size=3, stride=1, activation="leaky", bn=True):
    lines = ["[convolutional]", f"filters={filters}", f"size={size}", f"stride={stride}", "pad=1"]
    lines += ["batch_normalize=1"] if bn else []
    return "\n".join(lines + [f"activation={activation}", ""])


def csp_block(filters):
    """YOLOv4-tiny's CSP stage: conv, keep the second half of its channels, two convs, concat."""
    half = filters // 2
    return "".join(
        [
            conv(filters),
            "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n",
            conv(half),
            conv(half),
            "[route]\nlayers=-1,-2\n",
            conv(filters, size=1),
            "[route]\nlayers=-6,-1\n",
            "[maxpool]\nsize=2\nstride=2\n",
        ]
    )


YOLO = (
    "[yolo]\nmask={mask}\nanchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319\nclasses={classes}\n"
    "num=6\nscale_x_y=1.05\n"
)


def yolov4_tiny(size=416, classes=80):
    """YOLOv4-tiny's layer sequence (38 layers, heads at 29 and 36, CSP splits with route groups,
    scale_x_y=1.05); darknet's backbone prefix is its first 29 layers."""
    out = 3 * (5 + classes)
    return "".join(
        [
            f"[net]\nwidth={size}\nheight={size}\nchannels=3\n",
            conv(32, stride=2),
            conv(64, stride=2),
            csp_block(64),
            csp_block(128),
            csp_block(256),
            conv(512),
            conv(256, size=1),
            conv(512),
            conv(out, size=1, activation="linear", bn=False),
            YOLO.format(mask="3,4,5", classes=classes),
            "[route]\nlayers=-4\n",
            conv(128, size=1),
            "[upsample]\nstride=2\n",
            "[route]\nlayers=-1,23\n",
            conv(256),
            conv(out, size=1, activation="linear", bn=False),
            YOLO.format(mask="1,2,3", classes=classes),
        ]
    )


def resized(cfg_text: str, size: int) -> str:
    """The cfg with its [net] width and height set to `size`."""
    cfg_text = re.sub(r"(?m)^width\s*=.*$", f"width={size}", cfg_text, count=1)
    return re.sub(r"(?m)^height\s*=.*$", f"height={size}", cfg_text, count=1)
