"""IMDb sentiment at the byte level, as LRA Text: binary label, truncated/padded to 4096 bytes.

Data: the Large Movie Review Dataset v1.0, ``aclImdb/{train,test}/{pos,neg}/*.txt`` (UTF-8 reviews; the
``unsup`` folder and the ``.feat`` files are ignored). ``data_dir`` may be the aclImdb folder or the folder
containing it.

Tokens: each UTF-8 byte b becomes id b+1; id 0 is padding (vocabulary 257). Label: neg 0, pos 1.
Examples are ordered by a fixed shuffle (``data_seed``) so that ``n_train``/``n_test`` caps stay balanced.
Target "sequence"; pad_id 0, so the model's pooling skips the padding.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eigsweep.config import Count, PosInt, Str
from eigsweep.tasks._util import pad_rows, resolve_dir, subsample
from eigsweep.tasks.base import Params, Task, TaskData

if TYPE_CHECKING:
    import torch

LAYOUT = ["train/pos", "train/neg", "test/pos", "test/neg"]
HOW = ("Obtain aclImdb_v1.tar.gz (Large Movie Review Dataset, https://ai.stanford.edu/~amaas/data/sentiment/) "
       "yourself and extract it; eigsweep never downloads.")
PAD = 0
VOCAB_SIZE = 257


class IMDbParams(Params):
    data_dir: Str = ""          # aclImdb, or the folder containing it
    seq_len: PosInt = 4096      # bytes kept per review (truncate / pad)
    n_train: Count = 0          # > 0: cap (a fixed random subset)
    n_test: Count = 0
    data_seed: Count = 0


def read_split(root: Path, split: str) -> tuple[list[bytes], list[int]]:
    texts, labels = [], []
    for label, sub in ((0, "neg"), (1, "pos")):
        for f in sorted((root / split / sub).glob("*.txt")):
            texts.append(f.read_bytes())
            labels.append(label)
    return texts, labels


def encode_bytes(texts: list[bytes], seq_len: int) -> torch.Tensor:
    return pad_rows([np.frombuffer(t[:seq_len], dtype=np.uint8).astype(np.int64) + 1 for t in texts],
                    seq_len, PAD)


class IMDb(Task):
    Params = IMDbParams
    name = "imdb"

    def _root(self) -> Path:
        return resolve_dir(self.name, self.params.data_dir, LAYOUT, ["aclImdb"], HOW)

    def check_available(self) -> None:
        self._root()

    def _load_split(self, root: Path, split: str, limit: int, seed: int):
        import torch

        texts, labels = read_split(root, split)
        if not texts:
            raise FileNotFoundError(f"task 'imdb': no *.txt reviews in {root / split}/pos or /neg. {HOW}")
        idx = subsample(len(texts), limit, seed)
        return (encode_bytes([texts[i] for i in idx], self.params.seq_len),
                torch.tensor([labels[i] for i in idx], dtype=torch.long))

    def load(self) -> TaskData:
        p = self.params
        root = self._root()
        train_x, train_y = self._load_split(root, "train", p.n_train, p.data_seed)
        test_x, test_y = self._load_split(root, "test", p.n_test, p.data_seed + 1)
        return TaskData(train_x, train_y, test_x, test_y, vocab_size=VOCAB_SIZE, n_outputs=2, target="sequence",
                        pad_id=0)
