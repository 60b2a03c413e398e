"""feature_cache: features are built once per key and read back exactly; a damaged file is rebuilt."""

import numpy as np
import pytest

from peftqa.features.cache import load_or_build_features
from peftqa.features.windows import build_features
from peftqa.model.backbone import load_tokenizer
from tests.helpers import TOKENIZER_DIR, assert_same_features, example_of, window_examples


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(TOKENIZER_DIR))


def test_second_build_comes_from_the_cache(tokenizer, tmp_path):
    examples = [example_of("Paris is the capital of France.", "Paris")]
    first, cached = load_or_build_features(examples, tokenizer, 128, 32, "md5", cache_dir=tmp_path)
    assert not cached
    second, cached = load_or_build_features(examples, tokenizer, 128, 32, "md5", cache_dir=tmp_path)
    assert cached
    for name in ("input_ids", "offsets", "row_starts", "start_positions", "end_positions", "example_index"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    _, cached = load_or_build_features(examples, tokenizer, 128, 48, "md5", cache_dir=tmp_path)
    assert not cached  # another stride is another key


# ---------------------------------------------------------------------------- the windowed fast path
# It tokenises each context once and must build exactly the FeatureSet that tokenising every
# (question, context) pair with the tokenizer's own truncation builds.


def test_cache_key_survives_tokenizer_calls(tokenizer, tmp_path):
    """Tokenizer calls change the backend's truncation settings; the cache must still be found."""
    examples = window_examples()
    _, cached = load_or_build_features(examples, tokenizer, 128, 32, "md5", tmp_path)
    assert not cached
    tokenizer("a question", "a context", truncation="only_second", max_length=64, padding="max_length")
    again, cached = load_or_build_features(examples, tokenizer, 128, 32, "md5", tmp_path)
    assert cached
    assert_same_features(again, build_features(examples, tokenizer, 128, 32))


def test_a_damaged_cache_file_is_rebuilt_not_fatal(tokenizer, tmp_path):
    examples = window_examples()
    load_or_build_features(examples, tokenizer, 128, 32, "md5", tmp_path)
    (stored,) = tmp_path.glob("*.npz")
    stored.write_bytes(b"not an npz file")
    again, cached = load_or_build_features(examples, tokenizer, 128, 32, "md5", tmp_path)
    assert not cached
    assert_same_features(again, build_features(examples, tokenizer, 128, 32))
    assert [p.name for p in tmp_path.iterdir()] == [stored.name]  # rewritten, no temporary left
