#!/bin/bash
# Issue 4 section 5 on this CPU: VGG16 (224, 112; convolutions on Eigen as the VGG config sets) and BERT-base.
cd "$(dirname "$0")/.."
export XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot
${PYTHON:-.venv/bin/python} -m experiments.bench --profile=cpu_transfer --models=vgg16 --out=runs/bench_cpu_transfer_vgg16_224
${PYTHON:-.venv/bin/python} -m experiments.bench --profile=cpu_transfer --models=vgg16 --image_size=112 --out=runs/bench_cpu_transfer_vgg16_112
unset XLA_FLAGS
${PYTHON:-.venv/bin/python} -m experiments.bench --profile=cpu_transfer --models=bert_base --out=runs/bench_cpu_transfer_bert_base
