"""BERT features (GPT stage): the official recipe on tiny random BERTs saved here, loading, the stage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gptsovits_train.config import Config
from gptsovits_train.data.manifest import Clip
from gptsovits_train.errors import GsvError
from gptsovits_train.features.bert import (
    RANDOM_BERT_NOTICE,
    BertFeaturizer,
    BertLoadError,
    expand_to_phones,
    extract_bert,
    load_bert,
)
from gptsovits_train.layout import DatasetLayout
from gptsovits_train.text import g2p_detailed, phones_to_ids

HIDDEN = 32
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"，。！？", *"你好世界今天气很我们去学校的是一个人"]


def _config(layers: int = 4):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=HIDDEN,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
    )


def _tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={t: i for i, t in enumerate(VOCAB)})


def build_tiny_bert(folder: Path, *, seed: int = 0, masked_lm_bin: bool = False) -> Path:
    """A seeded random BERT + tokenizer in HF format.

    `masked_lm_bin`: store it as the official chinese-roberta folder does: a `BertForMaskedLM`
    `pytorch_model.bin` (keys `bert.*` and the `cls.*` head) and only `tokenizer.json` (no vocab.txt,
    no tokenizer_config.json).
    """
    from transformers import BertForMaskedLM, BertModel

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if masked_lm_bin:
        mlm = BertForMaskedLM(_config()).eval()
        mlm.config.save_pretrained(str(folder))
        torch.save(mlm.state_dict(), folder / "pytorch_model.bin")
        _tokenizer().save_pretrained(str(folder))
        (folder / "tokenizer_config.json").unlink()
    else:
        BertModel(_config(), add_pooling_layer=False).eval().save_pretrained(str(folder))
        _tokenizer().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_bert(tiny_dir, HIDDEN)


def official_recipe(loaded, text: str, word2ph: list[int]) -> np.ndarray:
    """gpt-stage facts §2 written out for one sentence: tokenize, hidden_states[-3], row 0, drop CLS/SEP,
    repeat row i word2ph[i] times, transpose."""
    enc = loaded.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        res = loaded.model(**enc, output_hidden_states=True).hidden_states[-3][0][1:-1]
    rows = [res[i].repeat(word2ph[i], 1) for i in range(len(word2ph))]
    return torch.cat(rows, dim=0).T.numpy()


def test_expand_to_phones_by_hand():
    feats = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    got = expand_to_phones(feats, [2, 0, 1])
    np.testing.assert_array_equal(got, np.array([[1.0, 1.0, 5.0], [2.0, 2.0, 6.0]]))
    with pytest.raises(ValueError):
        expand_to_phones(feats, [1, 1])


def test_features_follow_the_official_recipe(tiny):
    text = "你好，世界。"
    word2ph = [2, 2, 1, 2, 2, 1]
    feats = BertFeaturizer(tiny, "cpu")([text])[0]
    assert isinstance(feats, np.ndarray) and feats.shape == (len(text), HIDDEN)
    np.testing.assert_allclose(
        expand_to_phones(feats, word2ph), official_recipe(tiny, text, word2ph), atol=1e-6
    )
    # hidden_states[-3] of a 4-layer model is the output of layer 2 (entry 0 is the embeddings)
    enc = tiny.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        h = tiny.model.embeddings(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"])
        for layer in tiny.model.encoder.layer[:2]:
            out = layer(h)
            h = out[0] if isinstance(out, tuple) else out
    np.testing.assert_allclose(feats, h[0, 1:-1].numpy(), atol=1e-5)


def test_batching_does_not_change_the_features(tiny):
    texts = ["你好，世界。", "今天天气很好", "我们去学校！", "好"]
    feat = BertFeaturizer(tiny, "cpu")
    batched = feat(texts)
    for text, got in zip(texts, batched, strict=True):
        alone = feat([text])[0]
        assert isinstance(got, np.ndarray) and isinstance(alone, np.ndarray)
        assert got.shape == (len(text), HIDDEN)
        np.testing.assert_allclose(got, alone, atol=1e-5)


def test_official_masked_lm_bin_folder_loads_with_the_same_encoder(tmp_path):
    """The official folder layout: BertForMaskedLM weights (.bin, read with weights_only) + tokenizer.json."""
    from transformers import BertForMaskedLM

    folder = build_tiny_bert(tmp_path / "roberta", seed=5, masked_lm_bin=True)
    loaded = load_bert(folder, HIDDEN)
    text = "今天天气很好"
    mlm = BertForMaskedLM(_config()).eval()
    mlm.load_state_dict(torch.load(folder / "pytorch_model.bin", weights_only=True))
    enc = loaded.tokenizer(text, return_tensors="pt")
    with torch.no_grad():  # what the official code runs: AutoModelForMaskedLM, hidden_states[-3]
        want = mlm(**enc, output_hidden_states=True).hidden_states[-3][0][1:-1].numpy()
    got = BertFeaturizer(loaded, "cpu")([text])[0]
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_one_token_per_character_is_checked(tiny):
    out = BertFeaturizer(tiny, "cpu")(["你好abc", "你好"])
    assert isinstance(out[0], ValueError) and "1 tokens for 3 characters" not in str(out[0])
    assert "3 tokens for 5 characters" in str(out[0])
    assert isinstance(out[1], np.ndarray)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "BERT folder not found"),
        ("hidden", "hidden size is 32, expected 1024"),
        ("not_bert", "not BERT"),
        ("no_tokenizer", "has no tokenizer"),
        ("no_weights", "has no weights"),
    ],
)
def test_unusable_folders_are_clear_errors(tmp_path, tiny_dir, change, message):
    import shutil

    folder = tmp_path / "m"
    if change != "missing":
        shutil.copytree(tiny_dir, folder)
    hidden = 1024 if change == "hidden" else HIDDEN
    if change == "not_bert":
        text = (folder / "config.json").read_text().replace('"model_type": "bert"', '"model_type": "hubert"')
        (folder / "config.json").write_text(text)
    if change == "no_tokenizer":
        (folder / "tokenizer.json").unlink()
    if change == "no_weights":
        (folder / "model.safetensors").unlink()
    with pytest.raises(BertLoadError, match=message):
        load_bert(folder, hidden)


def test_incomplete_weights_are_refused(tmp_path):
    folder = build_tiny_bert(tmp_path / "m", masked_lm_bin=True)
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    del sd["bert.encoder.layer.1.attention.self.query.weight"]
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(BertLoadError, match="1 weights missing"):
        load_bert(folder, HIDDEN)


# ------------------------------------------------------------------------------------------- stage
def _clip(layout: DatasetLayout, cid: str, text: str, language: str) -> Clip:
    result = g2p_detailed(
        text, "auto" if language == "zh" and any(c.isascii() and c.isalpha() for c in text) else language
    )
    wav = layout.wav(cid)
    wav.parent.mkdir(parents=True, exist_ok=True)
    wav.write_bytes(b"RIFF")  # the stage only looks at its modification time
    return Clip(
        cid,
        layout.relative(wav),
        "/src",
        0.0,
        1.0,
        1.0,
        text,
        language,
        "s",
        n_samples=32000,
        n_frames=50,
        phones=result.phones,
        phone_ids=phones_to_ids(result.phones),
        word2ph=result.word2ph,
        norm_text=result.norm_text,
        text_version="v2",
    )


def _cfg(model: str, hidden: int = HIDDEN) -> Config:
    cfg = Config()
    cfg.prepare.bert = cfg.prepare.bert.model_copy(
        update={"model": model, "device": "cpu", "batch_size": 2, "hidden_size": hidden}
    )
    return cfg


def test_stage_writes_zh_features_mixed_lines_as_official_inference(tmp_path, tiny_dir, tiny):
    layout = DatasetLayout(tmp_path / "ds")
    clips = [
        _clip(layout, "a", "你好，世界。", "zh"),
        _clip(layout, "b", "今天天气很好！", "zh"),
        _clip(layout, "c", "hello world, this is english", "en"),
        _clip(layout, "d", "我们去apple学校", "zh"),  # mixed: an English run inside, no word2ph
        _clip(layout, "e", "good morning everyone", "zh"),  # a "zh" line without any Mandarin run
    ]
    result = extract_bert(layout, clips, _cfg(str(tiny_dir)))
    assert not result.skipped and not result.warnings
    by_id = {c.id: c for c in result.clips}
    assert by_id["c"].bert is None and by_id["e"].bert is None
    assert sorted(p.stem for p in layout.bert_dir.glob("*.npy")) == ["a", "b", "d"]
    for cid in ("a", "b"):
        clip = by_id[cid]
        assert clip.bert == f"bert/{cid}.npy"
        arr = np.load(layout.root / clip.bert)
        assert arr.dtype == np.float16 and arr.shape == (HIDDEN, len(clip.phone_ids or []))
        want = official_recipe(tiny, clip.norm_text or "", clip.word2ph or [])
        np.testing.assert_allclose(arr.astype(np.float32), want, atol=2e-3)  # fp16 storage
    # mixed line: as the official inference, BERT of each Mandarin run, zeros for the English run
    want_parts = []
    for text, lang in (("我们去", "zh"), ("apple", "en"), ("学校", "zh")):
        run = g2p_detailed(text, lang)
        if lang == "zh":
            want_parts.append(official_recipe(tiny, run.norm_text, run.word2ph or []))
        else:
            want_parts.append(np.zeros((HIDDEN, len(run.phones)), dtype=np.float32))
    mixed = np.load(layout.root / (by_id["d"].bert or "missing")).astype(np.float32)
    assert mixed.shape == (HIDDEN, len(by_id["d"].phone_ids or []))
    np.testing.assert_allclose(mixed, np.concatenate(want_parts, axis=1), atol=2e-3)


def test_stage_resumes_and_recomputes_on_changes(tmp_path, tiny_dir):
    layout = DatasetLayout(tmp_path / "ds")
    clips = [_clip(layout, "a", "你好，世界。", "zh"), _clip(layout, "b", "今天天气很好！", "zh")]
    cfg = _cfg(str(tiny_dir))
    extract_bert(layout, clips, cfg)
    before = {c.id: layout.bert(c.id).stat().st_mtime_ns for c in clips}
    again = extract_bert(layout, clips, cfg)
    assert all(c.bert for c in again.clips)
    assert {c.id: layout.bert(c.id).stat().st_mtime_ns for c in clips} == before
    # a rewritten wav (new transcript or audio): that clip alone is redone
    later = before["b"] + 10**9
    os.utime(layout.wav("b"), ns=(later, later))
    extract_bert(layout, clips, cfg)
    assert layout.bert("a").stat().st_mtime_ns == before["a"]
    assert layout.bert("b").stat().st_mtime_ns != before["b"]
    # other text settings: everything is redone
    cfg.prepare.text = cfg.prepare.text.model_copy(update={"zh_latin": "drop"})
    extract_bert(layout, clips, cfg)
    assert layout.bert("a").stat().st_mtime_ns != before["a"]


def test_bad_clip_is_skipped_with_reason(tmp_path, tiny_dir):
    layout = DatasetLayout(tmp_path / "ds")
    good = _clip(layout, "a", "你好，世界。", "zh")
    bad = _clip(layout, "b", "你好，世界。", "zh")
    bad.norm_text = "你好,世界。"  # ASCII comma is not in the tiny vocabulary: still one token, but
    bad.word2ph = [2, 2, 1, 2]  # word2ph no longer matches the characters
    long = _clip(layout, "c", "你好，世界。" * 11, "zh")  # 66 characters, the tiny model has 64 positions
    result = extract_bert(layout, [good, bad, long], _cfg(str(tiny_dir)))
    assert [c.id for c in result.clips] == ["a"]
    reasons = {s.source: s.reason for s in result.skipped}
    assert {s.stage for s in result.skipped} == {"bert"}
    assert "4 word2ph entries" in reasons["b"]
    assert reasons["c"] == "66 characters, more than BERT's 62 positions"


def test_no_zh_clip_needs_no_model(tmp_path):
    layout = DatasetLayout(tmp_path / "ds")
    clips = [_clip(layout, "c", "hello world, this is english", "en")]
    result = extract_bert(layout, clips, Config())  # no model configured: not an error without zh clips
    assert result.clips[0].bert is None and not result.warnings


def test_zh_clips_without_a_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GSV_TRAIN_PRETRAINED", str(tmp_path / "none"))
    layout = DatasetLayout(tmp_path / "ds")
    with pytest.raises(GsvError, match="chinese-roberta-wwm-ext-large"):
        extract_bert(layout, [_clip(layout, "a", "你好，世界。", "zh")], Config())


def test_random_tiny_is_built_once_and_says_so(tmp_path):
    layout = DatasetLayout(tmp_path / "ds")
    clips = [_clip(layout, "a", "你好，世界。", "zh")]
    result = extract_bert(layout, clips, _cfg("random-tiny", 1024))
    assert [w.message for w in result.warnings] == [RANDOM_BERT_NOTICE]
    assert "pipeline" in RANDOM_BERT_NOTICE
    arr = np.load(layout.bert("a"))
    assert arr.shape == (1024, len(clips[0].phone_ids or []))
    loaded = load_bert(layout.random_bert_dir, 1024)
    assert loaded.random
    assert loaded.tokenizer.tokenize("你好") == ["你", "好"]  # Mandarin is not all [UNK]


def test_unsafe_bin_weights_are_never_unpickled(tmp_path):
    from tests.test_official_import import NotATensor

    folder = build_tiny_bert(tmp_path / "m", masked_lm_bin=True)
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    sd["evil"] = NotATensor()
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(BertLoadError, match="never unpickled"):
        load_bert(folder, HIDDEN)


def test_non_finite_fp16_output_is_recomputed_in_fp32(tiny, monkeypatch):
    """The half-precision retry (CUDA only in real runs), driven through a stand-in first pass."""
    feat = BertFeaturizer(tiny, "cpu")
    good = feat.char_features(["你好"])[0]
    calls = []

    def fake(texts, *, fp32=False):
        calls.append((list(texts), fp32))
        if fp32:
            return [good]
        return [np.full_like(good, np.nan) if t == "你好" else good for t in texts]

    monkeypatch.setattr(feat, "char_features", fake)
    feat.half = True
    out = feat(["你好", "好好"])
    assert calls == [(["你好", "好好"], False), (["你好"], True)]
    assert isinstance(out[0], np.ndarray) and np.array_equal(out[0], good) and feat.n_retried == 1
    feat.half = False  # on fp32 there is nothing to retry: the sentence fails
    assert feat(["你好"])[0] is None
