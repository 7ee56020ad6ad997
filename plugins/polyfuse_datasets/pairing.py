"""The digits pairing protocol: which MNIST image, FSDD clip and pendigits trajectory form each record.

The pairing is a pure function of the source labels, splits and the seed, so it can be
computed and tested at full size without writing a file, and other systems can reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polyfuse.errors import ConfigError

DIGITS = tuple(range(10))
SPLITS = ("train", "test")
TEST_PER_DIGIT = 200  # test records per digit

# Streams derived from the seed as default_rng([seed, stream]), so captions and the
# ``limit`` subset never shift the pairing draws, and a limited build is a subset of a full one.
CAPTION_STREAM = 1
SUBSET_STREAM = 2


@dataclass(frozen=True)
class SplitPairing:
    """Source rows of one split's records; entry i of every array belongs to record i."""

    labels: np.ndarray  # (N,) int64 digit of the record
    mnist: np.ndarray  # (N,) int64 row in the split's MNIST file
    fsdd: np.ndarray  # (N,) int64 row in fsdd.npz
    pendigits: np.ndarray  # (N,) int64 sample in pendigits_trajectories.npz

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DigitsPairing:
    """The train and test pairings of the digits recipe."""

    train: SplitPairing
    test: SplitPairing


def pair_digits(
    mnist_train_labels: np.ndarray,
    mnist_test_labels: np.ndarray,
    fsdd_labels: np.ndarray,
    fsdd_is_test: np.ndarray,
    pendigits_labels: np.ndarray,
    pendigits_split: np.ndarray,
    seed: int,
    test_per_digit: int = TEST_PER_DIGIT,
) -> DigitsPairing:
    """Pair MNIST images with same-label FSDD clips and pendigits trajectories.

    Every draw comes from one ``numpy.random.default_rng(seed)``, in this order:

    1. Train, one record per MNIST training image in file order. For digit 0 to 9 in turn,
       ``rng.choice(pool, size=count)`` draws with replacement from that digit's FSDD
       training clips (``is_test`` False), one per image of the digit in file order.
    2. The same for the pendigits training trajectories (``split == 0``).
    3. Test, for digit 0 to 9 in turn, three draws. ``rng.choice`` takes ``test_per_digit``
       MNIST test images without replacement, which are then listed in file order.
       ``rng.permutation`` shuffles the digit's FSDD test clips, which repeat cyclically to
       ``test_per_digit`` entries. ``rng.choice`` takes ``test_per_digit`` pendigits test
       trajectories (``split == 1``) without replacement. Test records are grouped by digit.

    Raises ValueError when a digit lacks the source rows that this needs.
    """
    rng = np.random.default_rng(seed)
    train_labels = np.asarray(mnist_train_labels, dtype=np.int64)
    fsdd_labels = np.asarray(fsdd_labels, dtype=np.int64)
    pendigits_labels = np.asarray(pendigits_labels, dtype=np.int64)
    fsdd_train = _pools(fsdd_labels, ~np.asarray(fsdd_is_test, dtype=bool), "FSDD training clips", 1)
    pendigits_train = _pools(pendigits_labels, np.asarray(pendigits_split) == 0, "pendigits training trajectories", 1)

    # 1-2. Train: every MNIST training image in file order, audio and sensor drawn with replacement.
    train_fsdd = np.empty(len(train_labels), dtype=np.int64)
    train_pendigits = np.empty(len(train_labels), dtype=np.int64)
    for target, pools in ((train_fsdd, fsdd_train), (train_pendigits, pendigits_train)):
        for digit in DIGITS:
            rows = np.flatnonzero(train_labels == digit)
            target[rows] = rng.choice(pools[digit], size=len(rows), replace=True)
    train = SplitPairing(train_labels, np.arange(len(train_labels), dtype=np.int64), train_fsdd, train_pendigits)

    # 3. Test: a fixed number per digit, each FSDD test clip reused in a shuffled cycle.
    test_labels = np.asarray(mnist_test_labels, dtype=np.int64)
    mnist_test = _pools(test_labels, np.ones(len(test_labels), dtype=bool), "MNIST test images", test_per_digit)
    fsdd_test = _pools(fsdd_labels, np.asarray(fsdd_is_test, dtype=bool), "FSDD test clips", 1)
    pendigits_test = _pools(
        pendigits_labels, np.asarray(pendigits_split) == 1, "pendigits test trajectories", test_per_digit
    )
    columns: dict[str, list[np.ndarray]] = {"mnist": [], "fsdd": [], "pendigits": []}
    for digit in DIGITS:
        columns["mnist"].append(np.sort(rng.choice(mnist_test[digit], size=test_per_digit, replace=False)))
        columns["fsdd"].append(np.resize(rng.permutation(fsdd_test[digit]), test_per_digit))
        columns["pendigits"].append(rng.choice(pendigits_test[digit], size=test_per_digit, replace=False))
    test = SplitPairing(
        np.repeat(np.asarray(DIGITS, dtype=np.int64), test_per_digit),
        *(np.concatenate(columns[name]).astype(np.int64) for name in ("mnist", "fsdd", "pendigits")),
    )
    return DigitsPairing(train, test)


def balanced_subset(labels: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Return at most ``limit`` record positions, sorted, balanced over the distinct labels.

    Each label's positions are shuffled, then taken round-robin over the labels in ascending
    order, so label counts differ by at most one unless a label runs out of records.
    ``None``, or a limit of at least ``len(labels)``, keeps every position.
    """
    labels = np.asarray(labels)
    if limit is None or limit >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    groups = [rng.permutation(np.flatnonzero(labels == value)) for value in np.unique(labels)]
    rounds = max(len(group) for group in groups)
    ordered = [group[round_index] for round_index in range(rounds) for group in groups if round_index < len(group)]
    return np.sort(np.asarray(ordered[:limit], dtype=np.int64))


def check_seed_and_limit(seed: int, limit: int | None) -> None:
    """Raise ConfigError unless ``seed`` is an integer >= 0 and ``limit`` is None or an integer >= 1."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ConfigError(f"limit must be an integer >= 1 (records per split), or None for all records; got {limit!r}")


def _pools(labels: np.ndarray, mask: np.ndarray, description: str, minimum: int) -> dict[int, np.ndarray]:
    """Return the rows of each digit where ``mask`` is set. Raise ValueError if a digit has fewer than ``minimum``."""
    pools = {digit: np.flatnonzero(mask & (labels == digit)) for digit in DIGITS}
    short = {digit: len(rows) for digit, rows in pools.items() if len(rows) < minimum}
    if short:
        raise ValueError(
            f"the pairing needs at least {minimum} {description} per digit, but digits {sorted(short)} "
            f"have {list(short.values())}. Check that the source files are the unmodified originals"
        )
    return pools
