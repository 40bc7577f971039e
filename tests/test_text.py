"Text conditioner: truncation warning, cache persistence, non-ASCII prompts, loading open_clip checkpoint files."
import time
import warnings
import open_clip
import pytest
import torch

from digseg.text import (PROMPT_TEMPLATE, TINY_CLIP_CONFIG, ClipBackbone, TextConditioner, TextEmbeddingCache,
                         TextProjection, build_tiny_clip, format_prompts)


@pytest.fixture(scope="module")
def clip():
    return build_tiny_clip()


def test_long_prompt_is_truncated_with_a_warning(clip):
    long_name = " ".join(["very"]*100) + " long class"
    with pytest.warns(UserWarning, match="exceed CLIP's 77-token context and are truncated"):
        ids = clip.tokenize(format_prompts([long_name]))
    assert ids.shape == (1, 77)
    assert ids[0, -1] == clip.tokenizer.eot_token_id          # still ends with end-of-text, as open_clip does
    torch.testing.assert_close(ids, open_clip.tokenize(format_prompts([long_name])))
    cond = TextConditioner(clip, TextProjection(clip.width, 32))
    with pytest.warns(UserWarning, match="truncated"):
        assert cond([long_name]).shape == (1, 77, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # a short prompt does not warn
        clip.tokenize(format_prompts(["cat"]))


def test_non_ascii_prompts(clip):
    names = ["Straßenbahn", "猫", "café au lait", "ёлка", "🌵 cactus"]
    prompts = format_prompts(names)
    assert prompts[1] == "A photo of a 猫"
    ids = clip.tokenize(prompts)
    assert torch.equal(ids, open_clip.get_tokenizer("ViT-B-16")(prompts))
    assert len(set(map(tuple, ids.tolist()))) == len(names)    # distinct names, distinct token sequences
    with torch.no_grad():
        hidden, pooled = clip.encode_text(ids)
    assert torch.isfinite(hidden).all() and hidden.shape == (5, 77, clip.width)


def test_cache_persists_atomically(clip, tmp_path):
    path = tmp_path/"sub"/"text_cache.pt"
    cache = TextEmbeddingCache(path)
    cond = TextConditioner(clip, TextProjection(clip.width, 32), cache=cache)
    h = cond.clip_hidden(["cat", "dog"])
    assert path.exists() and (cache.hits, cache.misses) == (0, 2)
    assert not list(path.parent.glob("*.tmp"))                  # the temp file was renamed away

    cache2 = TextEmbeddingCache(path)                           # a new process: loaded from disk
    assert len(cache2) == 2 and (clip.cache_key, "A photo of a cat") in cache2
    calls = []
    def fn(ps): calls.append(ps); raise AssertionError("should not recompute")
    h2 = cache2.get_or_compute(clip.cache_key, format_prompts(["dog", "cat"]), fn)
    assert calls == [] and torch.equal(h2, h.flip(0)) and (cache2.hits, cache2.misses) == (2, 0)

    other = build_tiny_clip(seed=5)                             # a different encoder never reads these entries
    cond_other = TextConditioner(other, TextProjection(other.width, 32), cache=cache2)
    cond_other.clip_hidden(["cat"])
    assert cache2.misses == 1


def test_cached_values_are_cpu_copies(clip):
    cache = TextEmbeddingCache()
    big = torch.randn(3, 4)
    cache.get_or_compute("k", ["a"], lambda ps: big[:1])
    big.zero_()                                                 # mutating the source does not touch the cache
    assert cache.store["k"]["a"].abs().sum() > 0
    assert cache.store["k"]["a"].untyped_storage().nbytes() == 4*4   # a compact copy, not a view of `big`


def test_from_open_clip_missing_file_fails_fast(tmp_path):
    t0 = time.time()
    with pytest.raises(FileNotFoundError, match=r"no open_clip checkpoint file at .*ViT-L-14\.bin.*never downloads"):
        ClipBackbone.from_open_clip("ViT-L-14", tmp_path/"ViT-L-14.bin")
    assert time.time() - t0 < 2
    with pytest.raises(TypeError, match="`pretrained_path`"):
        ClipBackbone.from_open_clip("ViT-L-14", None)


def test_from_open_clip_loads_a_saved_state_dict(tmp_path):
    cfg = {k: v for k, v in TINY_CLIP_CONFIG.items() if k != "arch"}
    torch.manual_seed(123)
    ref = open_clip.CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"])   # an open_clip model, not ours
    f = tmp_path/"tiny_open_clip.pt"
    torch.save(ref.state_dict(), f)
    m = ClipBackbone.from_open_clip("custom", f, **cfg)
    sd = m.model.state_dict()
    assert sd.keys() == ref.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in ref.state_dict().items())
    assert not any(p.requires_grad for p in m.parameters()) and not m.training
    ids = m.tokenize(format_prompts(["cat"]))
    with torch.no_grad():
        torch.testing.assert_close(m.encode_text(ids)[1], ref.eval().encode_text(ids, normalize=True))
    assert m.cache_key != build_tiny_clip().cache_key


def test_projection_round_trip(tmp_path):
    p = TextProjection(32, 48, hidden_dim=16)
    p.save_pretrained(tmp_path)
    q = TextProjection.from_pretrained(tmp_path)
    x = torch.randn(2, 77, 32)
    assert torch.equal(p(x), q(x)) and q.config.hidden_dim == 16
    assert all(t.requires_grad for t in q.parameters())


@pytest.mark.parametrize("bad, exc, msg", [
    ([], ValueError, "`classes` is an empty list"),
    ([""], ValueError, "`classes`[0] is empty"),
    (["\t \n"], ValueError, "whitespace-only"),
    ([None], TypeError, "`classes`[0] must be a string"),
    (["cat", b"dog"], TypeError, "`classes`[1] must be a string"),
    (42, TypeError, "`classes` must be a list"),
])
def test_bad_class_lists(bad, exc, msg):
    with pytest.raises(exc) as e:
        format_prompts(bad)
    assert msg in str(e.value)


def test_template_default():
    assert PROMPT_TEMPLATE == "A photo of a {}"
