"""WikiText language modelling: next-token prediction on packed blocks of 1024 tokens.

Data: ``wiki.train.tokens``, ``wiki.valid.tokens``, ``wiki.test.tokens`` (the WikiText-103 / -2 release;
``variant: raw`` reads ``wiki.{train,valid,test}.raw``). ``data_dir`` may hold them directly or in
wikitext-103/, wikitext-2/, wikitext-103-raw/ or wikitext-2-raw/.

Tokenisation: ``tokenizer: byte`` (default) — the file's UTF-8 bytes are the tokens (vocabulary 256).
``tokenizer: gpt2`` — GPT-2 BPE (vocabulary 50257) built ONLY from files the user supplies (never
downloaded): ``tokenizer_file`` (a HuggingFace tokenizer.json; needs the ``tokenizers`` package) or
``bpe_vocab_file`` + ``bpe_merges_file`` (GPT-2's encoder.json/vocab.json and vocab.bpe/merges.txt; uses
``tokenizers`` if installed, else ``tiktoken``).

Packing: each split is one token stream, cut into non-overlapping blocks of ``block_size``; the input is
stream[i·B : (i+1)·B] and the target stream[i·B+1 : (i+1)·B+1] (every position labelled). Target "token",
metric "perplexity" (exp of the mean token cross-entropy); per-token accuracy is reported too.
``max_train_tokens``/``max_test_tokens`` > 0 cap the streams (WikiText-103's byte stream is ~540M tokens).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import model_validator

from eigsweep.config import Count, PosInt, Str
from eigsweep.tasks._util import resolve_dir
from eigsweep.tasks.base import Params, Task, TaskData

if TYPE_CHECKING:
    import torch

HOW = ("Obtain WikiText-103 (wikitext-103-v1.zip, or wikitext-103-raw-v1.zip for variant raw; Merity et al. "
       "2016, e.g. the Salesforce release) yourself and extract it; eigsweep never downloads.")
SUBDIRS = ["wikitext-103", "wikitext-2", "wikitext-103-raw", "wikitext-2-raw"]
# GPT-2's pre-tokenisation pattern (r50k/gpt2), needed to build a tiktoken Encoding from local files.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"


class WikiTextParams(Params):
    data_dir: Str = ""
    variant: Literal["tokens", "raw"] = "tokens"    # tokens (wiki.*.tokens) | raw (wiki.*.raw)
    tokenizer: Literal["byte", "gpt2"] = "byte"
    tokenizer_file: Str = ""        # gpt2: a local tokenizer.json
    bpe_vocab_file: Str = ""        # gpt2: a local encoder.json / vocab.json
    bpe_merges_file: Str = ""       # gpt2: a local vocab.bpe / merges.txt
    block_size: PosInt = 1024
    eval_split: Literal["test", "valid"] = "test"
    max_train_tokens: Count = 0     # > 0: cap the training stream (first tokens)
    max_test_tokens: Count = 0

    @model_validator(mode="after")
    def _local_vocabulary(self):
        if self.tokenizer == "gpt2" and not self.tokenizer_file and not (self.bpe_vocab_file and self.bpe_merges_file):
            raise ValueError(
                "tokenizer: gpt2 needs local GPT-2 vocabulary files — set tokenizer_file (a tokenizer.json) or "
                "both bpe_vocab_file (encoder.json/vocab.json) and bpe_merges_file (vocab.bpe/merges.txt); "
                "eigsweep never downloads them. Or use tokenizer: byte.")
        return self


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the alphabet of its vocab files)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class _Encoder:
    """text -> list of ids, and the vocabulary size."""

    def __init__(self, p: WikiTextParams):
        self.kind = p.tokenizer
        if self.kind == "byte":
            self.vocab_size = 256
            return
        if p.tokenizer_file:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise ImportError("wikitext: tokenizer_file needs the 'tokenizers' package "
                                  "(pip install tokenizers)") from None
            self._tok = Tokenizer.from_file(str(Path(p.tokenizer_file).expanduser()))
            self.vocab_size = self._tok.get_vocab_size()
            self._mode = "tokenizers"
            return
        vocab, merges = (str(Path(f).expanduser()) for f in (p.bpe_vocab_file, p.bpe_merges_file))
        try:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers
            tok = Tokenizer(models.BPE.from_file(vocab, merges))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            self._tok, self._mode = tok, "tokenizers"
            self.vocab_size = tok.get_vocab_size()
            return
        except ImportError:
            pass
        try:
            import tiktoken
        except ImportError:
            raise ImportError("wikitext: tokenizer gpt2 needs the 'tokenizers' or the 'tiktoken' package") from None
        decode = {c: b for b, c in _bytes_to_unicode().items()}
        with open(vocab, encoding="utf-8") as f:
            encoder = json.load(f)
        specials = {t: i for t, i in encoder.items() if t == ENDOFTEXT}
        ranks = {bytes(decode[c] for c in t): i for t, i in encoder.items() if t not in specials}
        self._tok = tiktoken.Encoding(name="gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                      special_tokens=specials)
        self._mode = "tiktoken"
        self.vocab_size = self._tok.n_vocab

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "byte":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        lines = text.splitlines(keepends=True)
        ids: list[int] = []
        for s in range(0, len(lines), 10_000):
            chunk = lines[s : s + 10_000]
            if self._mode == "tiktoken":
                enc = self._tok.encode_ordinary_batch(chunk)
            else:
                enc = [e.ids for e in self._tok.encode_batch(chunk, add_special_tokens=False)]
            for e in enc:
                ids.extend(e)
        return np.asarray(ids, dtype=np.int64)


def pack_blocks(stream: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (inputs, next-token targets), each (n_blocks, block_size), views of ``stream``."""
    n = (len(stream) - 1) // block_size
    if n < 1:
        raise ValueError(f"wikitext: a stream of {len(stream)} tokens is shorter than one block of "
                         f"{block_size} + 1")
    x = stream[: n * block_size].view(n, block_size)
    y = stream[1 : n * block_size + 1].view(n, block_size)
    return x, y


class WikiText(Task):
    Params = WikiTextParams
    name = "wikitext"

    def _files(self) -> list[str]:
        ext = self.params.variant
        return [f"wiki.train.{ext}", f"wiki.{self.params.eval_split}.{ext}"]

    def _root(self) -> Path:
        return resolve_dir(self.name, self.params.data_dir, self._files(), SUBDIRS, HOW)

    def check_available(self) -> None:
        self._root()
        p = self.params
        if p.tokenizer == "gpt2":
            for key in ("tokenizer_file", "bpe_vocab_file", "bpe_merges_file"):
                f = getattr(p, key)
                if f and not os.path.exists(os.path.expanduser(f)):
                    raise FileNotFoundError(
                        f"task 'wikitext': {key} {f} does not exist; supply GPT-2's vocabulary files locally "
                        f"(encoder.json + vocab.bpe, or vocab.json + merges.txt, or tokenizer.json).")

    def _stream(self, path: Path, enc: _Encoder, limit: int) -> torch.Tensor:
        import torch

        text = path.read_text(encoding="utf-8")
        ids = enc.encode(text)
        ids = ids[:limit] if limit else ids
        return torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))

    def load(self) -> TaskData:
        self.check_available()
        p = self.params
        root = self._root()
        enc = _Encoder(p)
        train_f, test_f = self._files()
        train_x, train_y = pack_blocks(self._stream(root / train_f, enc, p.max_train_tokens), p.block_size)
        test_x, test_y = pack_blocks(self._stream(root / test_f, enc, p.max_test_tokens), p.block_size)
        return TaskData(train_x, train_y, test_x, test_y, vocab_size=enc.vocab_size, n_outputs=enc.vocab_size,
                        target="token", metric="perplexity")
