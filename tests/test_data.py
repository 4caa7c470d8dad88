"""The shipped datasets: shapes, counts, cleaning, and integrity errors."""

import gzip
import shutil

import pandas as pd
import pytest
import torch

from helpers import data

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize(("split", "n", "counts"), [("train", 60_000, MNIST_TRAIN_COUNTS),
                                                    ("test", 10_000, MNIST_TEST_COUNTS)])
def test_load_mnist_shapes_dtypes_and_label_counts(split, n, counts):
    images, labels = data.load_mnist(split)
    assert images.shape == (n, 28, 28)
    assert images.dtype == torch.uint8
    assert labels.shape == (n,)
    assert labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == counts
    assert images.max() == 255
    assert images.min() == 0


def test_load_mnist_returns_fresh_tensors():
    a, _ = data.load_mnist("test")
    a[0, 0, 0] = 77
    b, _ = data.load_mnist("test")
    assert b[0, 0, 0] == 0


def test_mnist_tensors_are_floats_in_unit_interval():
    x, y = data.mnist_tensors("test", limit=100)
    raw, _ = data.load_mnist("test")
    assert x.shape == (100, 1, 28, 28)
    assert x.dtype == torch.float32
    assert len(y) == 100
    assert 0.0 <= x.min()
    assert x.max() <= 1.0
    assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), raw[:100])


def test_mnist_loader_is_seeded():
    first = [next(iter(data.mnist_loader("train", batch_size=8, seed=3)))[1] for _ in range(2)]
    other = next(iter(data.mnist_loader("train", batch_size=8, seed=4)))[1]
    assert torch.equal(first[0], first[1])
    assert not torch.equal(first[0], other)


@pytest.mark.parametrize(("split", "rows"), [("train", 32_561), ("test", 16_281)])
def test_load_adult_rows_label_and_cleaning(split, rows):
    frame = data.load_adult(split)
    assert len(frame) == rows
    assert list(frame.columns) == data.ADULT_COLUMNS[:-1] + [data.ADULT_LABEL]
    assert set(frame[data.ADULT_LABEL].unique()) == {0, 1}
    assert 0.23 < frame[data.ADULT_LABEL].mean() < 0.25  # about 24% earn more than 50K
    assert set(frame["sex"].unique()) == {"Male", "Female"}
    assert not (frame["workclass"] == "?").any()
    assert frame["workclass"].isna().sum() > 0
    assert not frame["education"].str.startswith(" ").any()
    assert pd.api.types.is_integer_dtype(frame["age"])


def test_load_acs_income_keeps_missing_incomes_missing():
    frame = data.load_acs_income()
    assert frame.shape == (2000, 13)
    assert frame["income"].isna().sum() == 377
    assert (frame["income"].dropna() >= 0).all()
    assert set(frame["gender"].unique()) == {"female", "male"}


@pytest.mark.parametrize("loader", [data.load_mnist, data.load_adult, data.mnist_tensors])
def test_unknown_split_is_rejected_with_the_valid_ones(loader):
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\)"):
        loader("validation")


@pytest.fixture
def data_copy(tmp_path):
    """A copy of data/ that a test may damage; the loaders' caches are bypassed."""
    copy = tmp_path / "data"
    shutil.copytree(data.DATA_DIR, copy, ignore=shutil.ignore_patterns("*.py"))
    data._mnist_arrays.cache_clear()
    yield copy
    data._mnist_arrays.cache_clear()


@pytest.mark.parametrize(("relative", "load"), [
    ("MNIST/raw/t10k-labels-idx1-ubyte.gz", lambda d: data.load_mnist("test", data_dir=d)),
    ("adult/adult.test.gz", lambda d: data.load_adult("test", data_dir=d)),
    ("acs/acs12.csv", lambda d: data.load_acs_income(data_dir=d)),
])
def test_truncated_file_names_the_file_and_the_fix(data_copy, relative, load):
    path = data_copy / relative
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(data.DataIntegrityError) as info:
        load(data_copy)
    assert str(path) in str(info.value)
    assert "python data/prepare.py" in str(info.value)


def test_altered_file_of_the_same_size_is_detected(data_copy):
    path = data_copy / "adult" / "adult.data.gz"
    text = bytearray(gzip.decompress(path.read_bytes()))
    text[:2] = b"38"  # the first person's age, 39, becomes 38
    path.write_bytes(gzip.compress(bytes(text)))
    with pytest.raises(data.DataIntegrityError, match="corrupted or altered"):
        data.load_adult("train", data_dir=data_copy)


def test_missing_file_names_the_file_and_the_fix(data_copy):
    (data_copy / "acs" / "acs12.csv").unlink()
    with pytest.raises(data.DataIntegrityError, match=r"missing.*python data/prepare\.py"):
        data.load_acs_income(data_dir=data_copy)


def test_checksums_cover_every_shipped_file():
    shipped = {str(p.relative_to(data.DATA_DIR)) for p in data.DATA_DIR.rglob("*")
               if p.is_file() and p.suffix != ".py" and p.name != "README.md"}
    assert shipped == set(data.CHECKSUMS)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
    ({"batch_size": True}, TypeError, "batch_size must be an integer"),
    ({"batch_size": 8.0}, TypeError, "batch_size must be an integer"),
    ({"shuffle": "yes"}, TypeError, "shuffle must be True or False"),
    ({"shuffle": 1}, TypeError, "shuffle must be True or False"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ({"seed": 1.5}, TypeError, "seed must be None, an int or a torch.Generator"),
    ({"seed": "0"}, TypeError, "seed must be None, an int or a torch.Generator"),
    ({"limit": 0}, ValueError, "limit must be an integer >= 1"),
    ({"limit": "10"}, TypeError, "limit must be an integer"),
])
def test_mnist_loader_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        data.mnist_loader("test", **kwargs)


def test_mnist_loader_shuffle_default_and_explicit():
    _, y = data.mnist_tensors("test", limit=64)
    _, y_train = data.mnist_tensors("train", limit=64)
    in_order = next(iter(data.mnist_loader("test", batch_size=64, limit=64)))[1]
    assert torch.equal(in_order, y)  # the test split keeps its order by default
    shuffled = next(iter(data.mnist_loader("test", batch_size=64, limit=64, shuffle=True)))[1]
    assert not torch.equal(shuffled, y)
    assert torch.equal(shuffled.sort().values, y.sort().values)  # a permutation of the same
    train = next(iter(data.mnist_loader("train", batch_size=64, limit=64)))[1]
    assert not torch.equal(train, y_train)  # the train split is shuffled by default
    kept = next(iter(data.mnist_loader("train", batch_size=64, limit=64, shuffle=False)))[1]
    assert torch.equal(kept, y_train)


def test_mnist_loader_accepts_a_generator_as_seed():
    def first(seed):
        return next(iter(data.mnist_loader("train", batch_size=16, limit=256, seed=seed)))[1]

    assert torch.equal(first(torch.Generator().manual_seed(5)), first(5))
    assert not torch.equal(first(5), first(6))


@pytest.mark.parametrize(("x", "y", "kwargs", "error", "match"), [
    (torch.zeros(3, 2).numpy(), torch.zeros(3), {}, TypeError, "x must be a torch.Tensor"),
    (torch.zeros(3, 2), [0, 1, 2], {}, TypeError, "y must be a torch.Tensor"),
    (torch.zeros(3, 2), torch.zeros(4), {}, ValueError, "x and y must have the same length"),
    (torch.zeros(0, 2), torch.zeros(0), {}, ValueError, "x is empty"),
    (torch.zeros(3, 2), torch.zeros(3), {"batch_size": 0}, ValueError, "batch_size"),
    (torch.zeros(3, 2), torch.zeros(3), {"shuffle": None}, TypeError, "shuffle"),
    (torch.zeros(3, 2), torch.zeros(3), {"seed": -2}, ValueError, "seed"),
])
def test_tensor_loader_rejects_bad_arguments(x, y, kwargs, error, match):
    with pytest.raises(error, match=match):
        data.tensor_loader(x, y, **kwargs)
