"""Mimi from its original release format (moshi): parity with Kyutai's own code at a tiny config, recorded by
scripts/make_mimi_moshi_fixture.py (kyutai-labs/moshi e6a55d2 = moshi 0.2.13, which pins torch < 2.10 and cannot
join this environment): ids identical and audio within 1e-5 for 1, 3 and 8 codebooks, the weight-normed and bf16
spellings, streaming, and the download-convert-load path against a local fake hub."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from zoo.audio.mimi import Mimi, MimiConfig
from zoo.tokenizer import Tokens

FIXTURE = Path(__file__).parent / "fixtures" / "mimi_moshi"
WEIGHTS = "tokenizer-tiny-checkpoint1.safetensors"
FRAME = 1920


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE / "io.safetensors"))


@pytest.fixture(scope="module")
def mimi() -> Mimi:
    return Mimi.from_release(FIXTURE)


def padded(x: torch.Tensor) -> torch.Tensor:
    """moshi's encode pads the waveform with zeros to whole frames before its encoder."""
    return F.pad(x, (0, -x.shape[-1] % FRAME))


def tokens(ids: torch.Tensor) -> Tokens:
    return Tokens(ids=ids, lengths=torch.full((ids.shape[0],), ids.shape[1]))


def test_moshi_release_converts_exactly(mimi, io):
    assert Mimi.is_release(FIXTURE) and Mimi.is_release(FIXTURE / WEIGHTS)
    x = io["x"]
    for q in (1, 3, 8):
        ids = mimi.encode(padded(x), num_codebooks=q).ids
        assert torch.equal(ids, io[f"ids_{q}"].transpose(1, 2)), q
        assert len(ids.unique()) > 8
        y = mimi.decode(tokens(ids))  # T · 1920 samples, as moshi decodes
        torch.testing.assert_close(y, io[f"audio_{q}"], atol=1e-5, rtol=0)
    # unpadded, every convolution pads itself (transformers' MimiModel): the whole frames code alike
    ids = mimi.encode(x, num_codebooks=8).ids
    assert torch.equal(ids[:, :-1], io["ids_8"].transpose(1, 2)[:, :-1])


def test_weight_normed_and_bf16_files_convert(mimi, tmp_path):
    """A training checkpoint (weight_g / weight_v, the attention as `in_projs.0.weight`) folds to the release's
    weights; a bf16 file converts to float32 at the bf16 values."""
    for name in ("config.json", "mimi_config.json"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    shutil.copy(FIXTURE / "tokenizer-weightnorm.safetensors", tmp_path / WEIGHTS)
    normed = Mimi.from_release(tmp_path)
    for (k, a), b in zip(mimi.state_dict().items(), normed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=k)
    half = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in load_file(str(FIXTURE / WEIGHTS)).items()}
    save_file(half, str(tmp_path / WEIGHTS))
    bf16 = Mimi.from_release(tmp_path / WEIGHTS)  # a file: the moshi config.json beside it names the architecture
    state = bf16.state_dict()
    assert all(v.dtype == torch.float32 for v in state.values())
    torch.testing.assert_close(state["output_proj.0.weight"], mimi.state_dict()["output_proj.0.weight"].bfloat16().float(),
                               atol=0, rtol=0)


def test_streaming_matches_moshi(mimi, io):
    """Ours streams exactly as it runs whole: moshi's batch codes, every frame, for pieces of 1 and 2 frames.
    moshi's own streaming mode keeps a ring of `context` keys and values that already holds the piece's new ones, so
    the first steps of a piece lose their oldest keys once the window is full (more of them the longer the piece;
    Mimi runs two transformer steps per frame): its streamed codes leave its batch codes after 3 frames of 1-frame
    pieces here (6-step window; 125 frames = 10 s in the release) and after 2 frames of 2-frame pieces. Until then
    ours equals its stream as well."""
    x = padded(io["x"])
    for step, exact in ((1, 3), (2, 2)):  # frames moshi's stream keeps whole windows for
        stream = mimi.encode_stream(num_codebooks=8)
        ids = torch.cat([stream(x[..., i:i + step * FRAME]) for i in range(0, x.shape[-1], step * FRAME)]
                        + [stream.flush()], dim=1)
        assert torch.equal(ids, io["ids_8"].transpose(1, 2))
        theirs = io[f"stream_ids_{step}"].transpose(1, 2)
        assert torch.equal(ids[:, :exact], theirs[:, :exact])
        assert not torch.equal(ids[:, exact:], theirs[:, exact:])  # the moshi quirk above (if it goes, tighten this)
    exact = 3
    decoder, ids = mimi.decode_stream(), io["ids_8"].transpose(1, 2)
    y = torch.cat([decoder(ids[:, t:t + 1]) for t in range(ids.shape[1])] + [decoder.flush()], dim=-1)
    torch.testing.assert_close(y, io["audio_8"], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[..., :exact * FRAME], io["stream_audio_8"][..., :exact * FRAME], atol=1e-5, rtol=0)


def test_bad_moshi_files_are_refused(tmp_path):
    shutil.copy(FIXTURE / WEIGHTS, tmp_path / WEIGHTS)
    with pytest.raises(ValueError, match="does not fit the Mimi architecture|codebooks"):  # no config: the release's
        Mimi.from_release(tmp_path / WEIGHTS)
    state = load_file(str(FIXTURE / WEIGHTS))
    state["encoder_transformer.transformer.input_proj.weight"] = torch.zeros(32, 32)
    save_file(state, str(tmp_path / WEIGHTS))
    shutil.copy(FIXTURE / "config.json", tmp_path / "config.json")
    shutil.copy(FIXTURE / "mimi_config.json", tmp_path / "mimi_config.json")
    with pytest.raises(ValueError, match="not part of the released architecture"):
        Mimi.from_release(tmp_path)
    (tmp_path / "mimi_config.json").write_text('{"transformer": {"gating": "silu"}}')
    with pytest.raises(ValueError, match="gating"):
        Mimi.from_release(tmp_path)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)  # not a header: not a release
    assert not Mimi.is_release(tmp_path / "junk.safetensors")
    assert not Mimi.is_release(tmp_path / "config.json")


def test_registered_moshi_release_and_a_fake_hub(io, tmp_path):
    """`mimi-moshiko` names the original file (CC-BY-4.0 on the card) at a pinned commit; the download-convert-load
    path runs against a loopback hub serving a moshi-format repo at that commit only (the tiny fixture under a test
    name; the real file holds the whole 79 M-parameter codec)."""
    import textwrap

    from tests.fakehub import load_release_from_fake_hub
    from zoo import hub

    entry = hub._RELEASES["mimi-moshiko"]
    assert entry.release.hf_repo == "kyutai/moshiko-pytorch-bf16" and entry.release.license == "CC-BY-4.0"
    assert entry.release.files == ("tokenizer-e351c8d8-checkpoint125.safetensors",)
    revision = entry.release.revision
    assert len(revision) == 40  # pinned to a commit
    torch.save({"x": padded(io["x"]), "ids": io["ids_3"].transpose(1, 2)}, tmp_path / "io.pt")
    code = textwrap.dedent(f"""
        import torch, zoo
        zoo.hub.register_release("mimi-moshi-tiny", "mimi", hf_repo="kyutai/moshi-tiny", revision={revision!r},
                                 license="CC-BY-4.0",
                                 license_url="https://creativecommons.org/licenses/by/4.0/",
                                 files=("config.json", "mimi_config.json", {WEIGHTS!r}))
        io = torch.load({str(tmp_path / 'io.pt')!r})
        tok = zoo.load("mimi-moshi-tiny")
        print(torch.equal(tok.encode(io["x"], num_codebooks=3).ids, io["ids"]), tok.family)
        print(sorted(p.name for p in (zoo.hub.cache_root() / "checkpoints" / "mimi-moshi-tiny").iterdir()))
    """)
    out, requests = load_release_from_fake_hub("kyutai/moshi-tiny", FIXTURE, ("config.json", "mimi_config.json", WEIGHTS),
                                               code, tmp_path / "cache", revision=revision)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[0] == "True mimi", out.stdout
    assert "model.safetensors" in out.stdout and "README.md" in out.stdout
    assert any(r.endswith(f"/resolve/{revision}/{WEIGHTS}") for r in requests)


def test_release_architecture_is_moshis_default():
    """No mimi config beside the file: the architecture is moshi's loaders._mimi_config, which is MimiConfig()."""
    from zoo.audio.mimi import _config_from_moshi

    assert _config_from_moshi({}) == MimiConfig()


def test_zoo_load_converts_a_moshi_file_by_path(io, tmp_path, monkeypatch):
    """`zoo.load(file)` / `zoo.load(folder)`: a moshi-format codec downloaded by hand converts once into the cache."""
    import zoo

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    x = padded(io["x"])
    for source in (FIXTURE / WEIGHTS, FIXTURE):
        tok = zoo.load(source)
        assert isinstance(tok, Mimi)
        assert torch.equal(tok.encode(x, num_codebooks=8).ids, io["ids_8"].transpose(1, 2))


def test_a_vocabulary_holds_mimi_at_fewer_codebooks(mimi, io):
    """Into the LLM: Mimi at 3 of its 8 codebooks (the semantic one first) round-trips through a vocabulary."""
    from zoo.llm import Entry, Vocabulary

    vocab = Vocabulary(text_size=100, entries=[Entry.from_tokenizer("speech", mimi, num_codebooks=3)])
    t = mimi.encode(padded(io["x"])[:1], **vocab.entries[0].encode_kwargs)
    assert t.ids.shape[-1] == 3 and torch.equal(t.ids, io["ids_3"][:1].transpose(1, 2))
    back = vocab.from_llm(vocab.to_llm(t, "speech")[0])[-1].tokens()
    assert torch.equal(back.ids, t.ids)
    torch.testing.assert_close(mimi.decode(back), io["audio_3"][:1], atol=1e-5, rtol=0)
