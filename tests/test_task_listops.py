"""ListOps: LRA recipe, LRA TSV layout, tokenisation; targets equal the evaluated expression."""
import random

import numpy as np
import pytest
import torch

from eigsweep.tasks import listops as lo
from eigsweep.tasks.listops import ListOps

SMALL = dict(seq_len=64, min_length=8, max_length=60, max_depth=5, max_args=4, n_train=150, n_val=20,
             n_test=30, data_seed=7)


def lra_eval(source: str) -> int:
    """Independent evaluator on the parenthesised pair structure of the LRA Source string."""
    toks = source.split()

    def parse(i):
        if toks[i] == "(":
            a, i = parse(i + 1)
            b, i = parse(i)
            assert toks[i] == ")"
            return (a, b), i + 1
        return toks[i], i + 1

    tree, end = parse(0)
    assert end == len(toks)

    def val(t):
        if isinstance(t, str):
            return t if t.startswith("[") or t == "]" else int(t)
        left, right = val(t[0]), val(t[1])
        if isinstance(left, str):                      # operator applied to its first argument
            return (left, [right])
        if right == "]":
            op, args = left
            return {"[MIN": min, "[MAX": max, "[SM": lambda a: sum(a) % 10,
                    "[MED": lambda a: int(np.median(a))}[op](args)
        return (left[0], left[1] + [right])

    return val(tree)


def test_tokenize_and_evaluate_known():
    src = "( ( ( ( [SM ( ( ( [MAX 2 ) 9 ) ] ) ) 7 ) 8 ) ] )"
    toks = lo.tokenize(src)
    assert toks == ["[SM", "[MAX", "2", "9", "]", "7", "8", "]"]
    assert lo.evaluate(toks) == (9 + 7 + 8) % 10 == lra_eval(src)
    assert lo.to_source(toks) == src
    assert lo.evaluate(lo.tokenize("[MED 1 2 3 4 ]")) == 2          # integer (floor) median
    assert lo.evaluate(lo.tokenize("[MED 7 1 5 ]")) == 5
    assert lo.evaluate(lo.tokenize("[MIN 4 [MAX 0 3 ] 6 ]")) == 3
    assert lo.evaluate(["5"]) == 5


def test_vocabulary_is_fixed():
    assert lo.VOCAB[0] == "<pad>" and len(lo.VOCAB) == 16
    assert set(lo.VOCAB[1:]) == {str(d) for d in range(10)} | {"[MIN", "[MAX", "[MED", "[SM", "]"}


def _depth_and_arity(toks):
    depth = max_depth = 0
    arity = []
    stack = []
    for t in toks:
        if t.startswith("["):
            if stack:
                stack[-1] += 1
            stack.append(0)
            depth += 1
            max_depth = max(max_depth, depth)
        elif t == "]":
            arity.append(stack.pop())
            depth -= 1
        else:
            if stack:
                stack[-1] += 1
    return max_depth, arity


@pytest.fixture(scope="module")
def generated():
    return lo.generate_splits(lo.ListOpsParams(**SMALL))


def test_generated_rows_follow_the_recipe(generated):
    rows = generated["train"] + generated["val"] + generated["test"]
    assert [len(generated[s]) for s in ("train", "val", "test")] == [150, 20, 30]
    assert len({s for s, _ in rows}) == len(rows), "deduplicated"
    for src, target in rows:
        toks = lo.tokenize(src)
        assert SMALL["min_length"] < len(toks) < SMALL["max_length"]
        assert target == lo.evaluate(toks) == lra_eval(src)
        depth, arity = _depth_and_arity(toks)
        assert depth < SMALL["max_depth"]                  # operators only strictly below max depth
        assert all(2 <= a <= SMALL["max_args"] for a in arity)
    assert len({t for _, t in rows}) >= 5


def test_generation_deterministic():
    a = lo.generate_splits(lo.ListOpsParams(**SMALL))
    b = lo.generate_splits(lo.ListOpsParams(**SMALL))
    c = lo.generate_splits(lo.ListOpsParams(**{**SMALL, "data_seed": 8}))
    assert a == b and a["train"] != c["train"]


def test_tree_value_probability():
    rng = random.Random(0)
    leaves = sum(len(lo.generate_tree(rng, 5, 4)) == 1 for _ in range(4000)) / 4000
    assert abs(leaves - 0.75) < 0.03


def test_tsv_roundtrip_and_loader(tmp_path, generated):
    for split, fname in lo.SPLIT_FILES.items():
        lo.write_tsv(tmp_path / fname, generated[split])
    head = (tmp_path / "basic_train.tsv").read_text().splitlines()
    assert head[0] == "Source\tTarget" and len(head) == 151
    assert all(line.rsplit("\t", 1)[1].isdigit() for line in head[1:])
    from_files = ListOps(data_dir=str(tmp_path), seq_len=64).load()
    direct = ListOps(**SMALL).load()
    for k in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(from_files, k), getattr(direct, k))
    d = direct
    assert d.target == "sequence" and d.n_outputs == 10 and d.vocab_size == 16
    assert d.train_x.shape == (150, 64) and d.train_y.shape == (150,)
    val = ListOps(data_dir=str(tmp_path), seq_len=64, eval_split="val", n_val=5).load()
    assert val.test_x.shape == (5, 64)


def test_reads_official_layout(tmp_path):
    (tmp_path / "basic_train.tsv").write_text(
        "Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n( ( ( ( [MIN ( ( ( [SM 5 ) 8 ) ] ) ) 4 ) 6 ) ] )\t3\n")
    (tmp_path / "basic_test.tsv").write_text("Source\tTarget\n7\t7\n")
    d = ListOps(data_dir=str(tmp_path), seq_len=12).load()
    ids = {t: i for i, t in enumerate(lo.VOCAB)}
    assert d.train_x[0].tolist() == [ids[t] for t in ["[MAX", "2", "9", "]"]] + [0] * 8
    assert d.train_x[1, :8].tolist() == [ids[t] for t in ["[MIN", "[SM", "5", "8", "]", "4", "6", "]"]]
    assert d.train_y.tolist() == [9, 3] and d.test_y.tolist() == [7]
    short = ListOps(data_dir=str(tmp_path), seq_len=3).load()     # truncation
    assert short.train_x.shape == (2, 3)


def test_cache_dir_writes_and_reuses(tmp_path):
    t = ListOps(**SMALL, cache_dir=str(tmp_path))
    d1 = t.load()
    files = list(tmp_path.glob("listops-*/basic_*.tsv"))
    assert len(files) == 3
    d2 = ListOps(**SMALL, cache_dir=str(tmp_path)).load()
    assert torch.equal(d1.train_x, d2.train_x) and torch.equal(d1.test_y, d2.test_y)


def test_missing_files_and_bad_tokens(tmp_path):
    with pytest.raises(FileNotFoundError, match="basic_train.tsv"):
        ListOps(data_dir=str(tmp_path / "nowhere")).check_available()
    (tmp_path / "basic_train.tsv").write_text("Source\tTarget\n( ( [FIRST 1 ) ] )\t1\n")
    (tmp_path / "basic_test.tsv").write_text("Source\tTarget\n1\t1\n")
    with pytest.raises(ValueError, match="FIRST"):
        ListOps(data_dir=str(tmp_path)).load()


def test_length_limit_only_cuts_rejected_trees():
    for seed in range(300):
        full = lo.generate_tree(random.Random(seed), 6, 5)
        cut = lo.generate_tree(random.Random(seed), 6, 5, limit=20)
        assert cut == (full if len(full) < 20 else None)
