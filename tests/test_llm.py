"""The joint vocabulary (zoo.llm), its Hugging Face glue, the LM recipe, and the shipped demo LM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.llm import ConstrainedLogits, Entry, Vocabulary, extend_hf_tokenizer, resize_hf_embeddings
from zoo.tokenizer import Tokens

ENTRIES = (
    Entry("image", "image", vocab_size=7, max_tokens=6),
    Entry("audio", "audio", vocab_size=5, num_codebooks=3, max_tokens=5, sep_every=2),
    Entry("action", "action", vocab_size=4, max_tokens=4, min_tokens=4),
    Entry("video", "video", vocab_size=12, num_codebooks=2, digits=(3, 4), max_tokens=3),
)


def vocab(text_size: int = 11, pad_id: int | None = None) -> Vocabulary:
    return Vocabulary(text_size=text_size, entries=ENTRIES, pad_id=pad_id)


# ----------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("pad_id", [None, 0])
def test_ranges_are_disjoint_contiguous_and_cover_every_id(pad_id):
    v = vocab(pad_id=pad_id)
    spans = sorted(v.ranges().values())
    assert spans[0][0] == 0 and spans[-1][1] == v.size
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        assert stop == start  # contiguous, no overlap, no hole
    assert len(v.token_strings()) == v.size - v.text_size
    assert len(set(v.token_strings())) == len(v.token_strings())
    audio = v.range("audio")
    assert v.ranges()["audio:codes:q2"] == (audio.codes + 10, audio.codes + 15)
    assert v.ranges()["video:codes:q1:d1"][1] - v.ranges()["video:codes:q1:d1"][0] == 4
    assert v.ranges()["image:codes"] == (v.range("image").codes, v.range("image").codes + 7)


def test_bad_entries_and_names_raise():
    with pytest.raises(ValueError, match="modality"):
        Entry("x", "smell", 4)
    with pytest.raises(ValueError, match="min_tokens"):
        Entry("x", "image", 4, max_tokens=2, min_tokens=3)
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(3, [ENTRIES[0], ENTRIES[0]])
    with pytest.raises(ValueError, match="pad_id"):
        Vocabulary(3, ENTRIES, pad_id=3)
    with pytest.raises(ValueError, match="not an entry"):
        vocab().to_llm(Tokens(ids=torch.zeros(1, 2, dtype=torch.long), lengths=torch.tensor([2])), "speech")


# ----------------------------------------------------------------------------------------- round trips


@st.composite
def interleavings(draw):
    """A random sequence of text runs and entry segments, each entry segment with random codes."""
    v = vocab(pad_id=draw(st.sampled_from([None, 3])))
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            text = draw(st.lists(st.integers(0, v.text_size - 1).filter(lambda i: i != v.pad), min_size=1, max_size=5))
            parts.append(("text", torch.tensor(text)))
        else:
            e = draw(st.sampled_from(ENTRIES))
            length = draw(st.integers(e.min_tokens, e.max_tokens))
            shape = (length,) if e.num_codebooks == 1 else (length, e.num_codebooks)
            codes = torch.tensor(draw(st.lists(st.integers(0, e.vocab_size - 1), min_size=length * e.num_codebooks,
                                               max_size=length * e.num_codebooks)), dtype=torch.long)
            parts.append((e.name, codes.reshape(shape)))
    return v, parts


def build(v: Vocabulary, parts) -> torch.Tensor:
    pieces = []
    for name, ids in parts:
        if name == "text":
            pieces.append(ids)
        else:
            pieces.append(v.to_llm(Tokens(ids=ids[None], lengths=torch.tensor([ids.shape[0]])), name)[0])
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)


def merged(parts):
    """Adjacent text runs read back as one."""
    out = []
    for name, ids in parts:
        if out and name == "text" and out[-1][0] == "text":
            out[-1] = ("text", torch.cat([out[-1][1], ids]))
        else:
            out.append((name, ids))
    return out


@settings(max_examples=150, deadline=None)
@given(interleavings())
def test_to_llm_from_llm_round_trip(case):
    v, parts = case
    seq = build(v, parts)
    assert seq.dtype == torch.long and (seq >= 0).all() and (seq < v.size).all()
    back = v.from_llm(seq)
    expected = merged(parts)
    assert [s.name for s in back] == [n for n, _ in expected]
    for seg, (_, ids) in zip(back, expected):
        assert seg.complete
        assert torch.equal(seg.ids, ids)


@settings(max_examples=100, deadline=None)
@given(interleavings(), st.integers(0, 40))
def test_sequences_follow_the_sampling_grammar_and_truncation_is_tolerated(case, cut):
    v, parts = case
    seq = build(v, parts)
    for p in range(len(seq)):  # every id of a valid sequence is allowed by the grammar
        assert v.allowed_next(seq[:p])[seq[p]], (p, seq.tolist())
    cut = min(cut, len(seq))
    segments = v.from_llm(seq[:cut])  # a truncated sequence still parses
    if segments and not segments[-1].complete:
        e = v.entry(segments[-1].name)
        assert segments[-1].ids.shape[0] <= e.max_tokens


def test_batch_with_different_lengths_pads_and_parses():
    v = vocab()
    t = Tokens(ids=torch.tensor([[1, 2, 3, 4], [6, 5, 0, 0]]), lengths=torch.tensor([4, 2]))
    ids = v.to_llm(t, "image")
    assert ids.shape == (2, 6) and ids[1, -1] == v.pad == ids[1, -2]
    for b in range(2):
        (seg,) = v.from_llm(ids[b])
        assert torch.equal(seg.tokens().ids[0], t.ids[b, : t.lengths[b]])


def test_multi_codebook_flattening_is_frame_major_with_separators():
    v = vocab()
    ids = torch.arange(15).reshape(1, 5, 3) % 5
    seq = v.to_llm(Tokens(ids=ids, lengths=torch.tensor([5])), "audio")[0]
    r = v.range("audio")
    # begin, 2 frames, sep, 2 frames, sep, 1 frame, end
    assert seq.tolist().count(r.sep) == 2 and seq[0] == r.begin and seq[-1] == r.end
    codes = seq[(seq >= r.codes)]
    assert ((codes - r.codes) // 5).tolist() == [0, 1, 2] * 5  # codebook q at position k % Q


def test_digits_write_a_large_codebook_in_small_blocks():
    e = Entry("image", "image", vocab_size=64000, digits=(512, 125), max_tokens=4)
    v = Vocabulary(text_size=5, entries=[e])
    assert v.size == 5 + 1 + 2 + 512 + 125
    ids = torch.tensor([[0, 511, 512, 63999]])
    seq = v.to_llm(Tokens(ids=ids, lengths=torch.tensor([4])), "image")[0]
    r = v.range("image")
    assert seq[1:-1].tolist() == [r.slots[0] + 0, r.slots[1] + 0, r.slots[0] + 511, r.slots[1] + 0,
                                  r.slots[0] + 0, r.slots[1] + 1, r.slots[0] + 511, r.slots[1] + 124]
    (seg,) = v.from_llm(seq)
    assert torch.equal(seg.ids, ids[0])
    with pytest.raises(ValueError, match="product"):
        Entry("image", "image", vocab_size=64000, digits=(512, 124))


# ----------------------------------------------------------------------------------------- strictness


@pytest.mark.parametrize("make_bad, message", [
    (lambda v: [1, v.size], "outside every range"),
    (lambda v: [1, -1], "outside every range"),
    (lambda v: [v.range("image").codes], "outside a begin/end"),
    (lambda v: [v.range("image").end], "outside a begin/end"),
    (lambda v: [v.range("image").begin, v.range("action").codes], "inside the image segment"),
    (lambda v: [v.range("image").begin, 2], "inside the image segment"),
    (lambda v: [v.range("image").begin, v.range("image").begin], "inside the image segment"),
    (lambda v: [v.range("audio").begin, v.range("audio").codes + 5], "slot q0"),  # codebook 1 first
    (lambda v: [v.range("video").begin, v.range("video").slots[1]], "slot q0:d0"),  # digit 1 first
    (lambda v: [v.range("audio").begin, v.range("audio").sep], "separators"),
    (lambda v: [v.range("action").begin, v.range("action").codes, v.range("action").end], "4..4 frames"),
    (lambda v: [v.range("image").begin, *[v.range("image").codes] * 7], "maximum of 6"),
])
def test_bad_ids_raise_value_error_naming_the_position(make_bad, message):
    v = vocab()
    with pytest.raises(ValueError, match=message):
        v.from_llm(torch.tensor(make_bad(v)))


def test_bad_inputs_to_to_llm_raise():
    v = vocab()
    with pytest.raises(ValueError, match=r"must lie in \[0, 7\)"):
        v.to_llm(Tokens(ids=torch.tensor([[7]]), lengths=torch.tensor([1])), "image")
    with pytest.raises(ValueError, match="codebook"):
        v.to_llm(Tokens(ids=torch.zeros(1, 2, dtype=torch.long), lengths=torch.tensor([2])), "audio")
    with pytest.raises(ValueError, match="at most 6"):
        v.to_llm(Tokens(ids=torch.zeros(1, 7, dtype=torch.long), lengths=torch.tensor([7])), "image")
    with pytest.raises(ValueError, match="continuous"):
        v.to_llm(Tokens(ids=None, lengths=torch.tensor([2]), latents=torch.zeros(1, 2, 3)), "image")
    with pytest.raises(ValueError, match="one sequence"):
        v.from_llm(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        v.from_llm(torch.zeros(3))


# ----------------------------------------------------------------------------------------- files


def test_save_load_round_trip_and_tampering(tmp_path):
    v = vocab(pad_id=2)
    path = v.save(tmp_path / "vocabulary.json")
    w = Vocabulary.load(path)
    assert w == v and w.ranges() == v.ranges() and w.size == v.size
    seq = build(v, [("text", torch.tensor([1])), ("audio", torch.zeros(3, 3, dtype=torch.long))])
    assert [s.name for s in w.from_llm(seq)] == ["text", "audio"]
    d = json.loads(path.read_text())
    d["entries"][0]["vocab_size"] = 8  # ids would shift: refused
    (tmp_path / "edited.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="do not match"):
        Vocabulary.load(tmp_path / "edited.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(ValueError, match="not a zoo vocabulary"):
        Vocabulary.load(tmp_path / "other.json")
    with pytest.raises(ValueError, match="no vocabulary file"):
        Vocabulary.load(tmp_path / "missing.json")


def test_entry_from_tokenizer_and_reload_checks_the_tokenizer(tmp_path):
    from zoo.action.beast import BEAST, BEASTConfig

    tok = BEAST(BEASTConfig(num_dof=2, num_control_points=6, max_control_points=6, vocab_size=16))
    x = torch.randn(8, 30, 2)
    tok.fit(x)
    tok.save_pretrained(tmp_path / "beast")
    e = Entry.from_tokenizer("action", tok, "beast", max_tokens=12, fixed_length=True)
    assert (e.vocab_size, e.max_tokens, e.min_tokens, e.modality) == (16, 12, 12, "action")
    Vocabulary(5, [e]).save(tmp_path / "vocabulary.json")
    v = Vocabulary.load(tmp_path / "vocabulary.json")
    loaded = v.load_tokenizer("action")  # resolved next to the JSON
    seq = v.to_llm(loaded.encode(x[:2]), "action")
    (seg,) = v.from_llm(seq[0])
    assert torch.allclose(loaded.decode(seg.tokens(), num_steps=30), loaded.decode(loaded.encode(x[:1])))
    wrong = Vocabulary(5, [Entry("action", "action", 32, max_tokens=12, tokenizer="beast")])
    wrong.save(tmp_path / "wrong.json")
    with pytest.raises(ValueError, match="built for another tokenizer"):
        Vocabulary.load(tmp_path / "wrong.json").load_tokenizer("action")


# ----------------------------------------------------------------------------------------- Hugging Face


def tiny_hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<unk>", "<eos>", "a", "red", "circle", "on", "black", "background"]
    wl = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=wl, unk_token="<unk>", eos_token="<eos>")


def test_hf_tokenizer_extension_matches_the_vocabulary_ids():
    tok = tiny_hf_tokenizer()
    v = Vocabulary(text_size=len(tok), entries=ENTRIES)
    extend_hf_tokenizer(tok, v)
    assert len(tok) == v.size
    assert tok.convert_tokens_to_ids("<|image:5|>") == v.range("image").codes + 5
    assert tok.convert_tokens_to_ids("<|audio:q2:1|>") == v.range("audio").codes + 2 * 5 + 1
    assert tok.pad_token_id == v.pad
    ids = tok("a red <|image:begin|><|image:3|><|image:0|><|image:end|> circle")["input_ids"]
    segs = v.from_llm(torch.tensor(ids))
    assert [s.name for s in segs] == ["text", "image", "text"] and segs[1].ids.tolist() == [3, 0]
    extend_hf_tokenizer(tok, v)  # idempotent
    assert len(tok) == v.size
    with pytest.raises(ValueError, match="text_size"):
        extend_hf_tokenizer(tiny_hf_tokenizer(), Vocabulary(text_size=3, entries=ENTRIES))


def test_hf_model_embedding_resize_and_constrained_generation():
    transformers = pytest.importorskip("transformers")
    tok = tiny_hf_tokenizer()
    v = Vocabulary(text_size=len(tok), entries=ENTRIES)
    extend_hf_tokenizer(tok, v)
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=v.text_size,
                                     bos_token_id=1, eos_token_id=1)
    model = transformers.GPT2LMHeadModel(config)
    old = model.get_input_embeddings().weight[:3].detach().clone()
    resize_hf_embeddings(model, v, pad_to_multiple_of=8)
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows >= v.size and rows % 8 == 0 and model.lm_head.weight.shape[0] == rows
    assert torch.equal(model.get_input_embeddings().weight[:3], old)  # old rows kept
    logits = model(torch.tensor([[2, 3, v.range("image").begin]])).logits
    assert logits.shape == (1, 3, rows)
    prompt = torch.tensor([tok("a red circle")["input_ids"]])
    out = model.generate(prompt, max_new_tokens=12, do_sample=True, logits_processor=[ConstrainedLogits(v, "image")],
                         pad_token_id=v.pad, eos_token_id=None)
    v.from_llm(out[0])  # whatever the random model samples parses


# ----------------------------------------------------------------------------------------- the LM and its recipe


def small_lm(tmp_path):
    pytest.importorskip("transformers")
    from recipes.lm_data import word_tokenizer
    from zoo.action.beast import BEAST, BEASTConfig
    from zoo.llm import MultimodalLM

    tok = BEAST(BEASTConfig(num_dof=2, num_control_points=6, max_control_points=6, vocab_size=16))
    tok.fit(torch.randn(8, 30, 2).cumsum(1))
    tok.save_pretrained(tmp_path / "beast")
    text = word_tokenizer(["Angle", "Snake"])
    vocab = Vocabulary(len(text), [Entry.from_tokenizer("action", tok, "beast", max_tokens=12, fixed_length=True)])
    torch.manual_seed(0)
    return MultimodalLM.build(vocab, text, n_layer=1, n_embd=32, n_head=2, n_positions=32), tok


def test_multimodal_lm_save_load_generate_and_tamper(tmp_path):
    from zoo.llm import MultimodalLM

    lm, tok = small_lm(tmp_path)
    lm.save_pretrained(tmp_path / "lm", summary={"metrics": {"x": 1.0}})
    back = MultimodalLM.from_pretrained(tmp_path / "lm")
    ids = torch.tensor([lm.sequence("Angle", entry="action")])
    assert torch.equal(lm.model(ids).logits, back.model(ids).logits)
    assert back.vocab == lm.vocab and back.summary["metrics"]["x"] == 1.0
    assert back.sequence("Snake") == lm.sequence("Snake") and back.text_tokenizer.pad_token_id == lm.vocab.pad
    segs = back.generate(["Angle", "Snake", "Angle Snake"], "action", seed=3)
    assert all(s.complete and s.ids.shape == (12,) for s in segs)
    again = back.generate(["Angle", "Snake", "Angle Snake"], "action", seed=3)
    assert all(torch.equal(a.ids, b.ids) for a, b in zip(segs, again))  # seeded
    traj = tok.decode(Tokens(ids=torch.stack([s.ids for s in segs]), lengths=torch.full((3,), 12)), num_steps=30)
    assert traj.shape == (3, 30, 2) and torch.isfinite(traj).all()
    with pytest.raises(ValueError, match="temperature"):
        back.generate(["Angle"], "action", temperature=0)
    weights = tmp_path / "lm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="sha256"):
        MultimodalLM.from_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match="expected family 'lm'"):
        MultimodalLM.from_pretrained(tmp_path / "beast")  # a tokenizer's folder is not an LM
    with pytest.raises(ValueError):
        MultimodalLM.from_pretrained(tmp_path)  # no checkpoint at all


def test_recipe_loss_falls_when_overfitting_a_tiny_batch():
    pytest.importorskip("transformers")
    from recipes.lm import InterleavedLM
    from recipes.lm_data import InterleavedData

    dm = InterleavedData(image_tokenizer=None, action_tokenizer="beast-lasa", action_repeat=1, batch_size=8)
    module = InterleavedLM(n_layer=1, n_embd=48, n_head=2, n_positions=64, dropout=0.0, threads=None)
    torch.manual_seed(0)
    module.build(dm)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape[0] == 8 and (batch[:, 0] == dm.text_tokenizer.bos_token_id).all()
    opt = torch.optim.AdamW(module.model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        losses = module.losses(batch)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        first = first if first is not None else losses["loss"].item()
    assert losses["loss"].item() < 0.5 * first
    assert "loss_action_codes" in losses


SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "lm-tiny-interleaved"


def test_shipped_demo_lm_reaches_its_card():
    """Sample again with the card's protocol (actions: all of it; images: the first 32 captions)."""
    pytest.importorskip("transformers")
    from zoo.llm.evaluate import ACTION, IMAGE, JUDGE, load_judge, measure
    from zoo.llm import MultimodalLM

    lm = MultimodalLM.from_pretrained(SHIPPED)
    card, p = lm.summary["metrics"], lm.summary["protocol"]
    torch.set_num_threads(1)
    names = [e.name for e in lm.vocab.entries]
    judge = load_judge(SHIPPED / JUDGE) if IMAGE in names else None
    got = measure(lm, action_samples=p["action_samples"], image_prompts=32, image_levels=p["image_levels"],
                  temperature=p["temperature"], seed=p["seed"], judge=judge, scale=False, guidance=p.get("guidance", 1.0))
    if ACTION in names:  # the same prompts and seed as the card: only float noise may differ
        assert got[ACTION]["metrics"]["action_shape_match_dtw"] >= card["action_shape_match_dtw"] - 0.05
    if IMAGE in names:  # a 32-caption subset of the card's 128: sampling noise, hence the margin
        assert got[IMAGE]["metrics"]["image_match"] >= card["image_match"] - 0.15
        assert got[IMAGE]["metrics"]["image_match"] > got[IMAGE]["metrics"]["image_match_wrong_caption"]


def test_judge_trains_on_reconstructions_and_records_both_accuracies(tmp_path):
    """With a tokenizer, the judge's metadata holds its val accuracy on real scenes and on reconstructions."""
    from recipes.lm import train_judge
    from zoo.llm.evaluate import ShapeJudge, judge_accuracy, load_judge, reconstruct
    from zoo.image.cat import CAT, CATConfig

    torch.manual_seed(0)
    cat = CAT(CATConfig(channels=(8, 16, 16), estimator_dim=8)).eval()  # untrained: 32x32, ratios 4/8/16
    x = torch.rand(3, 3, 32, 32)
    recon = reconstruct(cat, x, {"ratio": 16}, batch_size=2)
    assert recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1
    torch.testing.assert_close(recon, reconstruct(cat, x, {"ratio": 16}))  # batching does not change the result
    acc = train_judge(tmp_path / "judge.safetensors", levels=(0,), n=32, steps=2, tokenizer=cat,
                                encode_kwargs={"ratio": 16})
    assert judge_accuracy(tmp_path / "judge.safetensors") == acc
    assert {"all", "recon_all", "recon_kind"} <= set(acc) and acc["encode_kwargs"] == {"ratio": 16}
    assert isinstance(load_judge(tmp_path / "judge.safetensors"), ShapeJudge)
    plain = train_judge(tmp_path / "plain.safetensors", levels=(0,), n=32, steps=2)
    assert "recon_all" not in plain


def test_demo_writes_a_sheet_per_entry(tmp_path):
    pytest.importorskip("transformers")
    from PIL import Image

    from zoo.demo import lm_demo as demo

    report = demo(tmp_path, SHIPPED, samples=2)
    sheets = sorted(tmp_path.glob("llm_*.png"))
    assert sheets and all(Image.open(p).size[0] == 2 * 96 for p in sheets)
    assert "measured (card)" in report


# ----------------------------------------------------------------------------------------- classifier-free guidance


def test_guidance_one_is_plain_sampling_and_the_guided_loop_samples_as_transformers_does(tmp_path):
    lm, _ = small_lm(tmp_path)
    prompts = ["Angle", "Snake", "Angle Snake", "Snake"]
    plain = lm.generate(prompts, "action", seed=5)
    one = lm.generate(prompts, "action", seed=5, guidance=1.0)
    assert all(torch.equal(a.ids, b.ids) for a, b in zip(plain, one))
    # the KV-cache loop that guidance > 1 runs, at scale 1, draws what transformers' generate draws
    x = torch.tensor([lm.sequence("Angle", entry="action")] * 3)
    torch.manual_seed(7)
    ref = lm.model.generate(x, attention_mask=torch.ones_like(x), do_sample=True, top_k=0, max_new_tokens=13,
                            logits_processor=[ConstrainedLogits(lm.vocab, "action")],
                            eos_token_id=lm.vocab.range("action").end, pad_token_id=lm.vocab.pad)
    torch.manual_seed(7)
    ours = lm._sample_guided(x, "action", 1.0, temperature=1.0, top_k=None, max_new_tokens=13)
    assert torch.equal(ref, ours)


def test_guided_logits_follow_the_formula_with_the_empty_prompt(tmp_path, monkeypatch):
    """Every step's (cond, uncond) from the batched KV-cache pass equals a fresh full pass over the
    prompted and the empty-prompt sequences, and the sampled logits are uncond + s * (cond - uncond)."""
    import zoo.llm.model as llm

    lm, _ = small_lm(tmp_path)
    seen, formula = [], llm.guided_logits

    def spy(cond, uncond, scale):
        out = formula(cond, uncond, scale)
        seen.append((cond.clone(), uncond.clone(), out.clone()))
        return out

    monkeypatch.setattr(llm, "guided_logits", spy)
    prompts = ["Angle Snake", "Snake Angle"]
    segs = lm.generate(prompts, "action", seed=1, guidance=3.0)
    assert all(s.complete for s in segs) and len(seen) == 13  # 12 codes and the end marker
    cond_rows = torch.tensor([lm.sequence(p, entry="action") for p in prompts])
    empty = torch.tensor([lm.sequence("", entry="action")] * 2)
    assert empty.tolist()[0] == [lm.text_tokenizer.bos_token_id, lm.vocab.range("action").begin]
    codes = torch.stack([s.ids for s in segs]) + lm.vocab.range("action").codes  # (2, 12): the sampled LLM ids
    for t, (cond, uncond, out) in enumerate(seen):
        with torch.no_grad():
            full_c = lm.model(torch.cat([cond_rows, codes[:, :t]], 1)).logits[:, -1]
            full_u = lm.model(torch.cat([empty, codes[:, :t]], 1)).logits[:, -1]
        torch.testing.assert_close(cond, full_c, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(uncond, full_u, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out, uncond + 3.0 * (cond - uncond))
    assert not torch.allclose(seen[0][2], seen[0][0])  # guidance moved the logits


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_bad_guidance_raises(tmp_path, bad):
    lm, _ = small_lm(tmp_path)
    with pytest.raises(ValueError, match="guidance must be"):
        lm.generate(["Angle"], "action", guidance=bad)


def lasa_data(**kwargs):
    from recipes.lm_data import InterleavedData

    dm = InterleavedData(image_tokenizer=None, action_tokenizer="beast-lasa", action_repeat=1, batch_size=8, **kwargs)
    dm.setup()
    return dm


def test_condition_dropout_rate_is_honoured_seeded_and_keeps_the_segment():
    pytest.importorskip("transformers")
    p = 0.25
    dm = lasa_data(cond_dropout=p)
    rows = dm.train_rows * 20  # 2880 draws
    out = dm.drop_condition(rows)
    text = dm.vocab.text_size
    dropped = [a != b for a, b in zip(rows, out)]
    rate = sum(dropped) / len(rows)
    assert abs(rate - p) < 4 * (p * (1 - p) / len(rows)) ** 0.5  # within 4 binomial standard deviations
    for a, b, d in zip(rows, out, dropped):
        if d:  # <bos> then the segment: the empty prompt generate(..., guidance=s) contrasts with
            assert b[0] == a[0] and b[1] == dm.vocab.range("action").begin and b[1:] == a[-len(b) + 1:]
            assert all(i >= text for i in b[1:-1])
    again = lasa_data(cond_dropout=p)
    assert again.drop_condition(rows) == out  # seeded
    assert lasa_data().drop_condition(rows) == rows  # off by default
    batch = next(iter(dm.train_dataloader()))
    assert (batch[:, 0] == dm.text_tokenizer.bos_token_id).all()
    with pytest.raises(ValueError, match="cond_dropout"):
        lasa_data(cond_dropout=1.0)


def test_init_from_loads_the_weights_and_rejects_another_vocabulary_or_shape(tmp_path):
    pytest.importorskip("transformers")
    from recipes.lm import InterleavedLM

    dm = lasa_data()
    arch = dict(n_layer=1, n_embd=32, n_head=2, n_positions=64, dropout=0.0, threads=None)
    base = InterleavedLM(**arch)
    base.build(dm)
    base.lm.save_pretrained(tmp_path / "base")
    cont = InterleavedLM(**arch, init_from=str(tmp_path / "base"))
    cont.build(dm)
    assert all(torch.equal(a, b) for a, b in zip(base.model.state_dict().values(), cont.model.state_dict().values()))
    with pytest.raises(ValueError, match="n_layer"):
        InterleavedLM(**{**arch, "n_layer": 2}, init_from=str(tmp_path / "base")).build(dm)
    other, _ = small_lm(tmp_path)  # two words and a 16-code BEAST: another vocabulary
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="same vocabulary"):
        InterleavedLM(**arch, init_from=str(tmp_path / "other")).build(dm)
    with pytest.raises(ValueError, match="not a registered"):
        InterleavedLM(**arch, init_from="no-such-lm").build(dm)
    with pytest.raises(ValueError, match="expected family 'lm'"):  # a tokenizer is not an LM to continue
        InterleavedLM(**arch, init_from="beast-lasa").build(dm)


# ----------------------------------------------------------------------------------------- provenance and hostile files


def test_a_vocabulary_refuses_another_family_or_config(tmp_path):
    import zoo
    from zoo.action.beast import BEAST, BEASTConfig

    beast = zoo.load("beast-lasa")
    e = Entry.from_tokenizer("action", beast, "beast-lasa")
    assert e.family == "beast" and e.fingerprint == beast.fingerprint
    d = Vocabulary(5, [e]).to_dict()
    d["entries"][0]["tokenizer"] = "binning-lasa"  # same vocabulary size and shape, another family
    with pytest.raises(ValueError, match="built for a 'beast' tokenizer"):
        Vocabulary.from_dict(d).load_tokenizer("action")
    # same family, another config: a BEAST of other bounds saved beside the vocabulary
    for n, steps in (("a", 30), ("b", 40)):
        tok = BEAST(BEASTConfig(num_dof=2, num_control_points=6, max_control_points=6, vocab_size=16, num_steps=steps))
        tok.fit(torch.randn(8, steps, 2))
        tok.save_pretrained(tmp_path / n)
    built = Entry.from_tokenizer("action", zoo.load(tmp_path / "a"), "a")
    Vocabulary(5, [built]).save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").load_tokenizer("action").config.num_steps == 30
    d = Vocabulary(5, [built]).to_dict()
    d["entries"][0]["tokenizer"] = "b"
    (tmp_path / "swapped.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="fingerprint"):
        Vocabulary.load(tmp_path / "swapped.json").load_tokenizer("action")


@pytest.mark.parametrize("where", ["/tmp/beast", "../beast", "sub/../../beast", "hf-hub:org/beast",
                                   "https://example.com/beast", "~/beast", "not-a-registered-name", "escape"])
def test_vocabulary_paths_resolve_only_beside_it_or_to_registered_names(tmp_path, where):
    import zoo

    beast = zoo.load("beast-lasa")
    outside = tmp_path / "outside"
    beast.save_pretrained(outside / "beast")
    inside = tmp_path / "vocab"
    inside.mkdir()
    (inside / "escape").symlink_to(outside / "beast")  # a link leading out of the folder
    Vocabulary(5, [Entry.from_tokenizer("action", beast, where)]).save(inside / "v.json")
    with pytest.raises(ValueError, match="registered name|outside the vocabulary"):
        Vocabulary.load(inside / "v.json").load_tokenizer("action")


@pytest.mark.parametrize("edit", [
    lambda d: d["entries"][0].update(vocab_size=10**10),
    lambda d: d["entries"][0].update(num_codebooks=10**7),
    lambda d: d.update(text_size=10**9),
    lambda d: d["entries"][0].update(family=["beast"]),
    lambda d: d["entries"][0].update(vocab_size="256"),
    lambda d: d["entries"][0].update(max_tokens=True),
    lambda d: d["entries"][0].update(digits=[16, "16"]),
    lambda d: d["entries"][0].update(encode_kwargs={"num_tokens": {"deep": 1}}),
    lambda d: d["entries"][0].update(surprise=1),
    lambda d: d.update(entries={"action": 1}),
    lambda d: d.update(entries=[[1, 2]]),
    lambda d: d.update(format_version="2"),
    lambda d: d.update(pad_id="0"),
    lambda d: d.update(ranges=5),
])
def test_malformed_vocabulary_json_is_a_one_line_value_error(tmp_path, edit):
    import time

    d = Vocabulary(5, [Entry("action", "action", 256, max_tokens=20)]).to_dict()
    edit(d)
    (tmp_path / "v.json").write_text(json.dumps(d))
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        Vocabulary.load(tmp_path / "v.json")
    assert time.perf_counter() - start < 1.0 and "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["null", "[1, 2]", "5", '"vocabulary"', "[" * 200_000 + "]" * 200_000])
def test_vocabulary_files_of_the_wrong_json_shape_are_value_errors(tmp_path, text):
    (tmp_path / "v.json").write_text(text)
    with pytest.raises(ValueError, match="not a zoo vocabulary|not valid JSON"):
        Vocabulary.load(tmp_path / "v.json")


# ----------------------------------------------------------------------------------------- audio at fewer codebooks


def test_a_codec_at_fewer_codebooks_than_the_model_has(tmp_path):
    import zoo

    codec = zoo.load("codec-small-speech16k")
    q_all = codec.spec.num_codebooks
    wav = torch.sin(torch.linspace(0, 400, 3200))[None, None] * 0.3  # (1, 1, S): 0.2 s at 16 kHz
    e = Entry.from_tokenizer("audio", codec, "codec-small-speech16k", num_codebooks=4, sep_every=5)
    assert e.num_codebooks == 4 < q_all and e.encode_kwargs == {"num_codebooks": 4}
    assert Entry.from_tokenizer("audio", codec, "codec-small-speech16k", bitrate=2.0) == e.__class__(
        **{**vars(e), "sep_every": None, "encode_kwargs": {"bitrate": 2.0}})  # 0.5 kbit/s per codebook
    vocab = Vocabulary(10, [e])
    vocab.save(tmp_path / "v.json")
    tok = Vocabulary.load(tmp_path / "v.json").load_tokenizer("audio")  # fewer codebooks than the model: fits
    t = tok.encode(wav, **e.encode_kwargs)
    ids = vocab.to_llm(t, "audio")
    assert ids.shape[1] == 2 + 4 * t.lengths[0] + (int(t.lengths[0]) - 1) // 5
    (seg,) = vocab.from_llm(ids[0])
    assert seg.ids.shape == (int(t.lengths[0]), 4)
    back = seg.tokens()
    back.meta = t.meta
    assert torch.equal(tok.decode(back), tok.decode(t))
    with pytest.raises(ValueError, match="codebook"):  # all Q codebooks into a 4-codebook entry
        vocab.to_llm(tok.encode(wav), "audio")
    for bad in (dict(num_codebooks=q_all + 1), dict(num_codebooks=0), dict(bitrate=1.25),
                dict(num_codebooks=2, bitrate=1.0)):
        with pytest.raises(ValueError):
            Entry.from_tokenizer("audio", codec, "codec-small-speech16k", **bad)
    with pytest.raises(ValueError, match="takes no num_codebooks"):
        Entry.from_tokenizer("action", zoo.load("beast-lasa"), "beast-lasa", num_codebooks=1)
    # an entry of fewer codebooks that does not say how the tokens were made is another tokenizer's
    d = vocab.to_dict()
    d["entries"][0]["encode_kwargs"] = {}
    with pytest.raises(ValueError, match="built for another tokenizer"):
        Vocabulary.from_dict(d).load_tokenizer("audio")


def test_the_library_side_imports_neither_recipes_nor_transformers():
    import subprocess
    import sys

    code = ("import sys, zoo.llm, zoo.llm.evaluate, zoo.evaluate, zoo.demo, zoo.metrics; "
            "print(sorted(m for m in ('recipes', 'transformers', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_registered_name_in_a_vocabulary_is_never_a_folder_of_that_name_here(tmp_path, monkeypatch):
    import zoo

    here = tmp_path / "cwd"
    zoo.load("binning-lasa").save_pretrained(here / "beast-lasa")  # a local folder shadowing the registered name
    monkeypatch.chdir(here)
    assert zoo.load("beast-lasa").family == "binning"  # zoo.load: a local path wins, as in Hugging Face
    vocab = Vocabulary(5, [Entry.from_tokenizer("action", zoo.load("binning-lasa"), "beast-lasa")])
    vocab.save(tmp_path / "v.json")
    with pytest.raises(ValueError, match="built for a 'binning'"):  # the vocabulary loads the registered BEAST
        Vocabulary.load(tmp_path / "v.json").load_tokenizer("action")


def test_the_shipped_lm_loads_by_name_in_the_one_format_with_the_old_weights_and_ids():
    """zoo.load("lm-tiny-interleaved") (the README's example); the folder moved to the hub's one format
    (family "lm") with the very tensors and id layout of the folder it replaced (commit 0d5f292)."""
    pytest.importorskip("transformers")
    import subprocess

    import zoo
    from safetensors.torch import load
    from zoo import hub
    from zoo.llm import MultimodalLM

    lm = zoo.load("lm-tiny-interleaved")
    assert isinstance(lm, MultimodalLM) and lm.summary["metrics"]["image_match"] > 0
    assert hub.read_config(SHIPPED)["family"] == "lm" and "judge.safetensors" in hub.read_config(SHIPPED)["files"]
    assert all(e.family and e.fingerprint for e in lm.vocab.entries)  # provenance recorded
    assert [e.name for e in lm.vocab.entries] == ["image", "action"] and lm.vocab.load_tokenizer("action").family == "beast"
    root = Path(__file__).resolve().parent.parent

    def old(name: str) -> bytes:
        return subprocess.run(["git", "-C", str(root), "show", f"0d5f292:checkpoints/lm-tiny-interleaved/{name}"],
                              capture_output=True, check=True).stdout
    try:
        weights, vocabulary = old("model.safetensors"), json.loads(old("vocabulary.json"))
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git history here to compare with the old-format folder")
    state, now = load(weights), lm.model.state_dict()
    assert state and all(torch.equal(now[k], v.float()) for k, v in state.items())
    assert vocabulary["ranges"] == lm.vocab.to_dict()["ranges"]
