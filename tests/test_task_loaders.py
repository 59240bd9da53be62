"""Loaders of user-supplied data (sCIFAR, IMDb, WikiText) on tiny files in the exact release formats."""
import json
import pickle
import sys

import numpy as np
import pytest
import torch

from eigsweep.config import ConfigError
from eigsweep.tasks.imdb import IMDb
from eigsweep.tasks.scifar import SCIFAR, TRAIN_BATCHES
from eigsweep.tasks.wikitext import WikiText, _bytes_to_unicode, pack_blocks


# --- sCIFAR --------------------------------------------------------------------------------------------

def _write_cifar(root, n_per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    batches = {}
    for name in TRAIN_BATCHES + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        with open(d / name, "wb") as f:   # as the release: a pickled dict with bytes keys
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n_per_batch}, f, protocol=2)
        batches[name] = (data, labels)
    return d, batches


def test_scifar_reads_python_batches(tmp_path):
    d, batches = _write_cifar(tmp_path)
    for data_dir in (tmp_path, d):                         # the folder or its parent
        t = SCIFAR(data_dir=str(data_dir))
        t.check_available()
        out = t.load()
        assert out.train_x.shape == (20, 1024) and out.test_x.shape == (4, 1024)
        assert out.target == "sequence" and out.n_outputs == 10 and out.vocab_size == 256
    data, labels = batches["data_batch_2"]
    img = data[1].reshape(3, 32, 32).astype(float)
    gray = np.clip(np.rint(0.2989 * img[0] + 0.5870 * img[1] + 0.1140 * img[2]), 0, 255)
    assert out.train_x[5].tolist() == gray.reshape(-1).astype(int).tolist()   # row-major pixel order
    assert out.train_y[5].item() == labels[1]
    assert out.test_y.tolist() == batches["test_batch"][1]
    cont = SCIFAR(data_dir=str(d), input_mode="continuous", n_train=6).load()
    assert cont.train_x.shape == (6, 1024, 1) and cont.input_dim == 1 and cont.vocab_size == 0
    assert cont.train_x.dtype == torch.float32 and 0 <= cont.train_x.min() and cont.train_x.max() <= 1


def test_scifar_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        SCIFAR(data_dir=str(tmp_path)).check_available()
    with pytest.raises(FileNotFoundError, match="data_dir"):
        SCIFAR().check_available()
    with pytest.raises(ConfigError):
        SCIFAR(input_mode="rgb")


# --- IMDb ----------------------------------------------------------------------------------------------

def _write_imdb(root):
    reviews = {}
    for split in ("train", "test"):
        for sub in ("pos", "neg", "unsup") if split == "train" else ("pos", "neg"):
            d = root / "aclImdb" / split / sub
            d.mkdir(parents=True)
            for i in range(3):
                text = f"{split} {sub} review {i} — très bien<br />" + "x" * (i * 10)
                (d / f"{i}_{7 + i}.txt").write_text(text, encoding="utf-8")
                reviews[(split, sub, i)] = text
    (root / "aclImdb" / "train" / "labeledBow.feat").write_text("0 1:1\n")
    return reviews


def test_imdb_reads_aclimdb(tmp_path):
    reviews = _write_imdb(tmp_path)
    t = IMDb(data_dir=str(tmp_path), seq_len=40)
    t.check_available()
    d = t.load()
    assert d.train_x.shape == (6, 40) and d.test_x.shape == (6, 40)      # unsup ignored
    assert d.vocab_size == 257 and d.n_outputs == 2 and d.target == "sequence"
    assert sorted(d.train_y.tolist()) == [0, 0, 0, 1, 1, 1]
    expected = {}
    for (split, sub, i), text in reviews.items():
        if split == "train" and sub != "unsup":
            b = text.encode("utf-8")[:40]
            ids = [c + 1 for c in b] + [0] * (40 - len(b))
            expected[tuple(ids)] = int(sub == "pos")
    got = {tuple(x): y for x, y in zip(d.train_x.tolist(), d.train_y.tolist())}
    assert got == expected
    again = IMDb(data_dir=str(tmp_path / "aclImdb"), seq_len=40).load()
    assert torch.equal(again.train_x, d.train_x)                        # deterministic order
    capped = IMDb(data_dir=str(tmp_path), seq_len=8, n_train=2, n_test=3).load()
    assert capped.train_x.shape == (2, 8) and capped.test_x.shape == (3, 8)


def test_imdb_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="aclImdb"):
        IMDb(data_dir=str(tmp_path)).check_available()


# --- WikiText ------------------------------------------------------------------------------------------

WIKI = " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : <unk> Chronicles is a game . \n"


def _write_wiki(root, ext="tokens"):
    d = root / "wikitext-103"
    d.mkdir(parents=True, exist_ok=True)
    for split, reps in (("train", 20), ("valid", 3), ("test", 4)):
        (d / f"wiki.{split}.{ext}").write_text(WIKI * reps, encoding="utf-8")
    return d


def test_wikitext_bytes_packing(tmp_path):
    _write_wiki(tmp_path)
    t = WikiText(data_dir=str(tmp_path), block_size=32)
    t.check_available()
    d = t.load()
    stream = list((WIKI * 20).encode("utf-8"))
    n = (len(stream) - 1) // 32
    assert d.train_x.shape == d.train_y.shape == (n, 32)
    assert d.train_x.reshape(-1).tolist() == stream[: n * 32]
    assert d.train_y.reshape(-1).tolist() == stream[1 : n * 32 + 1]          # next-token targets
    assert d.target == "token" and d.metric == "perplexity" and d.vocab_size == d.n_outputs == 256
    test_stream = list((WIKI * 4).encode("utf-8"))
    assert d.test_x[0].tolist() == test_stream[:32]
    v = WikiText(data_dir=str(tmp_path), block_size=16, eval_split="valid", max_train_tokens=100).load()
    assert v.train_x.shape == (6, 16) and v.test_x[0].tolist() == test_stream[:16]


def test_wikitext_raw_variant_and_missing(tmp_path):
    _write_wiki(tmp_path, "raw")
    with pytest.raises(FileNotFoundError, match="wiki.train.tokens"):
        WikiText(data_dir=str(tmp_path)).check_available()
    assert WikiText(data_dir=str(tmp_path), variant="raw", block_size=64).load().train_x.shape[1] == 64


def test_wikitext_bpe_needs_local_files(tmp_path):
    with pytest.raises(ConfigError, match="never downloads"):
        WikiText(data_dir=str(tmp_path), tokenizer="gpt2")
    _write_wiki(tmp_path)
    t = WikiText(data_dir=str(tmp_path), tokenizer="gpt2", bpe_vocab_file=str(tmp_path / "encoder.json"),
                 bpe_merges_file=str(tmp_path / "vocab.bpe"))
    with pytest.raises(FileNotFoundError, match="encoder.json"):
        t.check_available()


def _write_tiny_gpt2_vocab(root):
    """A tiny GPT-2-format vocabulary: the 256 byte symbols, then merges 'Ġ'+'t', 'h'+'e', 'Ġt'+'he'."""
    b2u = _bytes_to_unicode()
    enc = {b2u[b]: i for i, b in enumerate(range(256))}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
    for a, b in merges:
        enc[a + b] = len(enc)
    enc["<|endoftext|>"] = len(enc)
    (root / "encoder.json").write_text(json.dumps(enc), encoding="utf-8")
    (root / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                    encoding="utf-8")
    return enc


@pytest.mark.parametrize("backend", ["tokenizers", "tiktoken"])
def test_wikitext_gpt2_bpe_from_local_files(tmp_path, monkeypatch, backend):
    if not _has(backend):
        pytest.skip(f"{backend} is not installed")
    if backend == "tiktoken":
        monkeypatch.setitem(sys.modules, "tokenizers", None)       # force the tiktoken path
    enc = _write_tiny_gpt2_vocab(tmp_path)
    d = tmp_path / "wikitext-103"
    d.mkdir()
    for s in ("train", "test"):
        (d / f"wiki.{s}.tokens").write_text(" the cat the\n" * 3, encoding="utf-8")
    out = WikiText(data_dir=str(tmp_path), tokenizer="gpt2", bpe_vocab_file=str(tmp_path / "encoder.json"),
                   bpe_merges_file=str(tmp_path / "vocab.bpe"), block_size=4).load()
    the = enc["Ġthe"]
    line = [the, enc["Ġ"], enc["c"], enc["a"], enc["t"], the, enc["Ċ"]]
    stream = line * 3
    assert out.vocab_size == len(enc)
    n = (len(stream) - 1) // 4 * 4
    assert out.train_x.reshape(-1).tolist() == stream[:n]
    assert out.train_y.reshape(-1).tolist() == stream[1 : n + 1]


def _has(mod):
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


def test_pack_blocks_too_short():
    with pytest.raises(ValueError):
        pack_blocks(torch.arange(5), 8)
