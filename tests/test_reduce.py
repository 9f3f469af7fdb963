"""Token reduction: the Reducer contract, the ViT patcher, VQToken, the selector and the shipped checkpoints."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoo.reduce import PrunePool, RandomDrop, ToMe, VQToken, VQTokenConfig, patch_timm, reduce, unpatch_timm
from zoo.reduce.base import resolve_keep
from zoo.hub import locate, read_config
from zoo.reduce.host import HEADS, HostClassifier, HostConfig, host_accuracy
from zoo.reduce.select import LearnedSelector, SelectorConfig

torch.set_num_threads(1)

MERGING = {"tome": lambda: ToMe(), "pool": lambda: PrunePool("pool"),
           "vq": lambda: VQToken(VQTokenConfig(dim=8, max_codes=64))}
ALL = {**MERGING, "prune": lambda: PrunePool("prune"), "adaptive": lambda: PrunePool("adaptive"),
       "random": lambda: RandomDrop(), "selector": lambda: LearnedSelector(SelectorConfig(dim=8, num_tokens=16))}


def tokens(b: int = 3, n: int = 17, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, n, d, generator=torch.Generator().manual_seed(seed))


def tiny_host() -> HostClassifier:
    torch.manual_seed(0)
    return HostClassifier(HostConfig(image_size=16, patch_size=4, dim=32, depth=3, num_heads=2, drop_path=0.0)).eval()


# ----------------------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("name", sorted(MERGING))
@pytest.mark.parametrize("keep", [1, 5, 0.5, 0.1, [2, 9, 0.3]])
def test_merging_sizes_sum_to_n(name, keep):
    x = tokens()
    red = MERGING[name]()(x, keep=keep, protect=1)
    torch.testing.assert_close(red.sizes.sum(1), torch.full((3,), 17.0))
    assert bool((red.source >= 0).all())  # nothing dropped when merging


@pytest.mark.parametrize("name", sorted(ALL))
def test_source_map_reconstructs_shapes_and_means(name):
    x = tokens()
    red = ALL[name]()(x, keep=0.4, protect=1)
    b, m, d = red.x.shape
    assert red.source.shape == (3, 17) and red.sizes.shape == (b, m)
    assert int(red.source.max()) < m and int(red.source.min()) >= -1
    back = red.unmerge(red.x)
    assert back.shape == x.shape
    # every real output token is the mean of the inputs the source map sends to it
    onehot = red.source_matrix()  # (B, M, N)
    assert onehot.shape == (b, m, 17)
    counts = onehot.sum(-1)
    torch.testing.assert_close(counts, red.sizes)  # sizes are counts of inputs at the first reduction
    mean = onehot @ x / counts.clamp(min=1)[..., None]
    torch.testing.assert_close(mean[red.mask], red.x[red.mask], atol=1e-5, rtol=1e-5)
    # un-merging puts each token back where its inputs were; dropped inputs get zeros
    kept = red.source >= 0
    torch.testing.assert_close(back[kept], red.x.gather(1, red.source.clamp(min=0)[..., None].expand(-1, -1, d))[kept])
    assert bool((back[~kept] == 0).all())


@pytest.mark.parametrize("name", sorted(ALL))
def test_keep_counts_honoured_per_sample(name):
    x = tokens(b=4)
    keep = [1, 4, 0.5, 16]  # counts and ratios of the 16 free tokens
    red = ALL[name]()(x, keep=keep, protect=1)
    want = torch.tensor([1, 4, 8, 16]) + 1
    if name == "vq":  # k-means may leave a cluster empty: at most K
        assert bool((red.lengths <= want).all()) and bool((red.lengths >= 2).all())
    else:
        assert red.lengths.tolist() == want.tolist()
    assert bool((red.sizes[red.lengths[:, None] <= torch.arange(red.x.shape[1])] == 0).all())  # padding has size 0


@pytest.mark.parametrize("name", sorted(ALL))
def test_cls_never_merged_or_dropped(name):
    x = tokens()
    x[:, 0] = x[:, 1]  # the CLS token looks exactly like a patch: it still must not merge
    red = ALL[name]()(x, keep=0.2, protect=1)
    assert red.source[:, 0].tolist() == [0, 0, 0]
    assert bool((red.source[:, 1:] != 0).all())
    torch.testing.assert_close(red.x[:, 0], x[:, 0])
    assert red.sizes[:, 0].tolist() == [1.0, 1.0, 1.0]


def test_tome_merges_the_most_similar_pair():
    x = torch.eye(6)[None].clone()
    x[0, 2] = x[0, 1] * 0.9 + 0.01  # token 2 (set A) is nearly token 1 (set B)
    red = ToMe()(x, keep=5)
    assert red.source[0, 2] == red.source[0, 1]
    assert red.sizes[0].tolist() == [1.0, 2.0, 1.0, 1.0, 1.0]


def test_prune_keeps_the_most_important_tokens():
    x = tokens(b=1, n=9)
    importance = torch.tensor([[0.0, 5, 1, 4, 2, 3, 0.5, 6, 0.1]])
    red = PrunePool("prune")(x, keep=3, importance=importance, protect=1)
    assert (red.source[0] >= 0).nonzero().squeeze(1).tolist() == [0, 1, 3, 7]


def test_adaptive_policy_pools_flat_and_prunes_peaked_samples():
    x = tokens(b=2, n=9)
    importance = torch.stack([torch.ones(9), torch.tensor([1.0, 9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 8])])
    pp = PrunePool("adaptive", threshold=0.5)
    red = pp(x, keep=3, importance=importance, protect=1)
    assert pp.last_pooled.tolist() == [True, False]
    assert red.sizes[0].sum() == 9 and red.sizes[1].sum() == 4


@pytest.mark.parametrize("bad", [0, -1, 17, 1.5, 0.0, -0.5, float("nan"), True, "half", None, [0.5, 0.5],
                                 torch.tensor([0.5, 0.5]), torch.ones(3, 2)])
def test_bad_keep_raises_value_error(bad):
    with pytest.raises(ValueError, match="keep"):
        ToMe()(tokens(), keep=bad, protect=1)


def test_resolve_keep_rounds_ratios_and_clips_counts_to_each_sample():
    assert resolve_keep(0.5, torch.tensor([10, 3])).tolist() == [5, 2]
    assert resolve_keep(8, torch.tensor([10, 3])).tolist() == [8, 3]
    assert resolve_keep(torch.tensor([1, 2]), torch.tensor([4, 4])).tolist() == [1, 2]


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="protect"):
        ToMe()(tokens(), keep=0.5, protect=17)
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        ToMe()(torch.randn(3, 8), keep=0.5)
    with pytest.raises(ValueError, match="method"):
        reduce(tokens(), keep=0.5, method="nope")


def test_reducers_are_deterministic():
    x = tokens()
    for make in ALL.values():
        r = make().eval()
        a, b = r(x, keep=0.3, protect=1), r(x, keep=0.3, protect=1)
        torch.testing.assert_close(a.x, b.x)
        assert torch.equal(a.source, b.source)


# ----------------------------------------------------------------------------------------- the ViT patcher


def test_patched_and_unpatched_agree_when_nothing_is_reduced():
    host = tiny_host()
    x = torch.rand(3, 3, 16, 16)
    ref = host(x)
    patched = copy.deepcopy(host)
    patch_timm(patched.vit, ToMe(), keep=1.0, layers=(0, 1))
    for keep in (1.0, 16):
        patched.vit.zoo_reduce.keep = keep
        out = patched(x)
        for h in HEADS:
            torch.testing.assert_close(out[h], ref[h], atol=1e-5, rtol=1e-5)
    unpatch_timm(patched.vit)
    torch.testing.assert_close(patched(x)["kind"], ref["kind"])


@pytest.mark.parametrize("name", ["tome", "prune", "adaptive", "random", "selector"])
def test_patched_model_uses_fused_attention(name, monkeypatch):
    host = tiny_host()
    reducer = ALL[name]()
    if name == "selector":
        reducer = LearnedSelector(SelectorConfig(dim=32, num_tokens=16))
    patch_timm(host.vit, reducer, keep=0.5, layers=(0, 1))
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get("attn_mask"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    out = host(torch.rand(2, 3, 16, 16))
    assert len(calls) == 3  # one fused call per block, never a hand-written softmax(QK^T)
    assert calls[0] is None  # before any reduction: no mask, so flash / efficient kernels stay eligible
    assert calls[1] is not None  # after merging: log-size (proportional) bias
    assert host.vit.zoo_reduce.last.lengths.tolist() == [9, 9]
    assert all(torch.isfinite(v).all() for v in out.values())


def test_per_sample_keep_in_a_batch_matches_each_sample_alone():
    host = tiny_host()
    patch_timm(host.vit, ToMe(), keep=[0.25, 0.75, 4], layers=(0, 1))
    x = torch.rand(3, 3, 16, 16)
    batch = host(x)["kind"]
    assert host.vit.zoo_reduce.last.lengths.tolist() == [5, 13, 5]
    for i, k in enumerate([0.25, 0.75, 4]):
        host.vit.zoo_reduce.keep = k
        torch.testing.assert_close(host(x[i:i + 1])["kind"], batch[i:i + 1], atol=1e-5, rtol=1e-4)


def test_patch_refuses_bad_arguments():
    host = tiny_host()
    with pytest.raises(ValueError, match="layers"):
        patch_timm(host.vit, ToMe(), layers=(7,))
    with pytest.raises(ValueError, match="Reducer"):
        patch_timm(host.vit, object())  # type: ignore[arg-type]
    patch_timm(host.vit, ToMe(), keep=0)
    with pytest.raises(ValueError, match="keep"):
        host(torch.rand(1, 3, 16, 16))


# ----------------------------------------------------------------------------------------- VQToken


def clustered(b: int = 2, n: int = 120, k: int = 5, d: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(b, k, d, generator=g) * 3
    labels = torch.randint(0, k, (b, n), generator=g)
    return centers.gather(1, labels[..., None].expand(-1, -1, d)) + 0.05 * torch.randn(b, n, d, generator=g)


@pytest.mark.parametrize("adaptive", [False, True])
def test_vqtoken_round_trip_fixed_and_adaptive(adaptive):
    x = clustered()
    vq = VQToken(VQTokenConfig(dim=8, max_codes=12, adaptive=adaptive)).eval()
    t = vq.encode(x)
    assert t.ids.shape == (2, 120) and t.lengths.tolist() == [120, 120]
    k = t.meta["num_codes"]
    assert (k == 5).all() if adaptive else (k == 12).all()  # adaptive finds the 5 clusters
    x_hat = vq.decode(t)
    assert x_hat.shape == x.shape
    assert float(((x_hat - x) ** 2).mean()) < 0.01  # each position gets its cluster's code back
    t2 = vq.encode(x)
    assert torch.equal(t.ids, t2.ids)
    assert t.meta["code_sizes"].sum(1).tolist() == [120.0, 120.0]


@pytest.mark.parametrize("init", ["farthest", "strided"])
def test_vqtoken_seedings_find_well_separated_clusters(init):
    x = clustered()
    vq = VQToken(VQTokenConfig(dim=8, max_codes=5, init=init, iters=10))
    assert float(((vq.decode(vq.encode(x)) - x) ** 2).mean()) < 0.5 * float(x.var())
    with pytest.raises(ValueError, match="init"):
        VQTokenConfig(init="random")


def test_vqtoken_zero_iterations_keeps_the_farthest_point_seeds():
    from zoo.reduce.vq import farthest_points, kmeans

    x = clustered()
    valid = torch.ones(x.shape[:2], dtype=torch.bool)
    valid[1, -7:] = False  # padding never joins a code
    k = torch.tensor([5, 3])
    labels, _ = kmeans(x, valid, k, iters=0)
    u = torch.nn.functional.normalize(x, dim=-1)
    seeds = farthest_points(u, valid, 5)
    for b in range(2):
        sim = u[b] @ u[b, seeds[b, :int(k[b])]].T  # every valid token joins its most similar seed
        assert torch.equal(labels[b][valid[b]], sim.argmax(1)[valid[b]])
    assert bool((labels[1, -7:] == -1).all())
    assert len(set(seeds[0].tolist())) == 5  # distinct seeds
    with pytest.raises(ValueError, match="iters"):
        VQTokenConfig(iters=-1)


def test_vqtoken_budget_and_bad_input():
    vq = VQToken(VQTokenConfig(dim=8, max_codes=12))
    t = vq.encode(clustered(), num_tokens=3)
    assert t.meta["num_codes"].tolist() == [3, 3] and int(t.ids.max()) == 2
    with pytest.raises(ValueError, match="num_tokens"):
        vq.encode(clustered(), num_tokens=13)
    with pytest.raises(ValueError, match="D"):
        vq.encode(torch.randn(2, 10, 7))
    bad = vq.encode(clustered(), num_tokens=3)
    bad.ids[0, 0] = 5
    with pytest.raises(ValueError, match="num_codes"):
        vq.decode(bad)
    with pytest.raises(ValueError, match="criterion"):
        VQTokenConfig(criterion="silhouette")


def test_vqtoken_save_and_load(tmp_path):
    import zoo

    vq = VQToken(VQTokenConfig(dim=8, max_codes=6, adaptive=True))
    vq.save_pretrained(tmp_path / "vq")
    back = zoo.load(tmp_path / "vq")
    assert isinstance(back, VQToken) and back.config == vq.config
    assert torch.equal(back.encode(clustered()).ids, vq.encode(clustered()).ids)


# ----------------------------------------------------------------------------------------- training


def test_selector_reconstruction_loss_falls_on_a_tiny_batch():
    torch.manual_seed(0)
    sel = LearnedSelector(SelectorConfig(dim=16, num_tokens=16, hidden=32, decoder_depth=1, decoder_heads=2))
    x = tokens(b=8, n=16, d=16)
    opt = torch.optim.Adam(sel.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        mask = sel.sample_mask(sel.scores(x))
        loss = F.mse_loss(sel.reconstruct(x, mask), sel.norm(x)) + 0.01 * mask.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert sel.scorer[0].weight.grad is not None and sel.scorer[0].weight.grad.abs().sum() > 0  # gradients reach the scorer


def test_host_loss_falls_on_a_tiny_batch():
    from recipes.vit_host import shape_tensors

    data = shape_tensors("train", 16, resolution=16)
    host = tiny_host().train()
    x, *y = data.tensors
    labels = dict(zip(HEADS, y))
    opt = torch.optim.AdamW(host.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        logits = host(x)
        loss = sum(F.cross_entropy(logits[h], labels[h]) for h in HEADS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ----------------------------------------------------------------------------------------- shipped checkpoints

VAL_N = 300
TOLERANCE = 0.06  # the card is measured on 1000 val scenes; a 300-scene batch drifts a few points


def shipped(name: str) -> bool:
    try:
        locate(name)
        return True
    except ValueError:
        return False


@pytest.fixture(scope="module")
def val_batch():
    from recipes.vit_host import shape_tensors

    x, *y = shape_tensors("val", VAL_N).tensors
    return x, dict(zip(HEADS, y))


@pytest.mark.skipif(not shipped("vit-host-shapes32"), reason="host checkpoint not shipped")
def test_shipped_host_reaches_its_card(val_batch):
    from zoo.reduce.host import load_host_classifier

    host = load_host_classifier()
    x, labels = val_batch
    with torch.no_grad():
        acc = host_accuracy(host(x), labels)
    card = read_config(locate("vit-host-shapes32"))["summary"]["val_accuracy"]
    for key in ("all", "mean"):
        assert acc[key] >= card[key] - TOLERANCE, (key, acc[key], card[key])
    pred = host.predict(x[:4])
    assert pred["count"].min() >= 1 and len(pred["names"]) == 4
    with pytest.raises(ValueError, match="values"):
        host.predict(x[:2] * 3)


@pytest.mark.skipif(not shipped("selector-vit-host-shapes32"), reason="selector checkpoint not shipped")
def test_shipped_selector_reaches_its_card(val_batch):
    from zoo.reduce.host import load_host_classifier
    from zoo.reduce.select import load_selector

    host, sel = load_host_classifier(), load_selector()
    card = read_config(locate("selector-vit-host-shapes32"))["summary"]["val_accuracy_at_keep"]
    patch_timm(host.vit, sel, keep=0.5, layers=(sel.config.layer,), proportional=False)
    x, labels = val_batch
    with torch.no_grad():
        acc = host_accuracy(host(x), labels)
    assert acc["all"] >= card["0.5"]["all"] - TOLERANCE
    assert not math.isnan(acc["mean"])


# ----------------------------------------------------------------------------------------- ToMe's schedule (r=)


def reference_tome(vit, images: torch.Tensor, r: int) -> tuple[torch.Tensor, list[list[float]]]:
    """ToMe written out per sample with Python lists (an independent reference of the official algorithm).

    Every block: hand-written attention with log(size) added to the logits; then split the tokens
    alternately (A = even positions, protected tokens included), score each A token against every B
    token by cosine similarity of the keys averaged over heads (-inf for protected A rows and protected B
    columns), merge the r A tokens with the highest best score into their best B token (size-weighted
    mean) and lay the tokens out as: protected (in order), other unmerged A (input order when tokens are
    protected, else by descending score), other B. Returns (logits, final sizes per sample).
    """
    p = vit.num_prefix_tokens
    x = vit.norm_pre(vit._pos_embed(vit.patch_embed(images)))
    outs, all_sizes = [], []
    for s in range(x.shape[0]):
        toks = x[s]
        sizes = [1.0] * toks.shape[0]
        for blk in vit.blocks:
            a = blk.attn
            n = toks.shape[0]
            q, k, v = a.qkv(blk.norm1(toks)).reshape(n, 3, a.num_heads, a.head_dim).permute(1, 2, 0, 3)
            logits = (q @ k.transpose(-1, -2)) * a.scale + torch.tensor(sizes).log()
            y = (logits.softmax(-1) @ v).transpose(0, 1).reshape(n, -1)
            toks = toks + blk.ls1(a.proj(y))
            keys = k.mean(0)
            rr = min(r, (n - p) // 2)
            if rr > 0:
                A, B = list(range(0, n, 2)), list(range(1, n, 2))
                best = {}
                for i in A:
                    cands = [(float(F.cosine_similarity(keys[i], keys[j], dim=0)), j) for j in B if j >= p]
                    score, j = max(cands) if i >= p else (-math.inf, None)
                    best[i] = (score, j)
                by_score = sorted(A, key=lambda i: -best[i][0])
                merged, kept = by_score[:rr], by_score[rr:]
                groups = {j: [j] for j in B}
                for i in merged:
                    groups[best[i][1]].append(i)
                others_a = sorted(i for i in kept if i >= p) if p else kept
                order = list(range(p)) + others_a + [j for j in B if j >= p]
                new, new_sizes = [], []
                for t in order:
                    members = groups.get(t, [t])
                    w = torch.tensor([sizes[m] for m in members])
                    new.append((toks[members] * w[:, None]).sum(0) / w.sum())
                    new_sizes.append(float(w.sum()))
                toks, sizes = torch.stack(new), new_sizes
            toks = toks + blk.ls2(blk.mlp(blk.norm2(toks)))
        outs.append(toks)
        all_sizes.append(sizes)
    return vit.forward_head(vit.norm(torch.stack(outs))), all_sizes


def tiny_vit(kind: str):
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    common = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=5)
    if kind == "distilled":
        return VisionTransformerDistilled(**common).eval()
    if kind == "no-cls":
        return VisionTransformer(**common, class_token=False, global_pool="avg").eval()
    if kind == "registers":
        return VisionTransformer(**common, reg_tokens=3, init_values=0.1).eval()
    return VisionTransformer(**common).eval()


@pytest.mark.filterwarnings("ignore:global_pool")
@pytest.mark.parametrize("kind", ["cls", "distilled", "no-cls", "registers"])
def test_constant_r_schedule_matches_an_independent_tome(kind):
    vit = tiny_vit(kind)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, want_sizes = reference_tome(vit, x, r=3)
        patch_timm(vit, ToMe(), r=3)
        got = vit(x)
    got = torch.cat(got, 1) if isinstance(got, tuple) else got
    want = torch.cat(want, 1) if isinstance(want, tuple) else want
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert vit.zoo_reduce.sizes.tolist() == want_sizes  # the same tokens merged, in the same order
    last = vit.zoo_reduce.last
    assert last.x.shape[1] == 16 + vit.num_prefix_tokens - 3 * 3
    torch.testing.assert_close(last.source_matrix().sum(-1), last.sizes)  # the source map counts the merged inputs


def test_constant_r_schedule_matches_official_tome_when_installed():
    tome = pytest.importorskip("tome")  # facebookresearch/ToMe, e.g. PYTHONPATH=/path/to/ToMe
    for kind in ("cls", "distilled"):
        vit = tiny_vit(kind)
        ref = copy.deepcopy(vit)
        tome.patch.timm(ref)
        ref.r = 3
        patch_timm(vit, ToMe(), r=3)
        x = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(vit(x), ref(x), atol=1e-5, rtol=1e-5)
        assert torch.equal(vit.zoo_reduce.sizes, ref._tome_info["size"][..., 0])


TOME_FIXTURE = Path(__file__).parent / "fixtures" / "tome_official"  # made by scripts/make_tome_fixture.py


@pytest.mark.filterwarnings("ignore:global_pool")
@pytest.mark.parametrize("kind", ["cls", "distilled", "no-cls"])
def test_constant_r_schedule_matches_saved_official_tome_outputs(kind):
    """Official ToMe's logits and sizes, saved with the tiny models' weights: checked without the official code."""
    from safetensors.torch import load_file
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    source = json.loads((TOME_FIXTURE / "SOURCE.json").read_text())
    saved = load_file(TOME_FIXTURE / f"{kind}.safetensors")
    cls_name, extra = source["kinds"][kind]
    cls = {"VisionTransformer": VisionTransformer, "VisionTransformerDistilled": VisionTransformerDistilled}[cls_name]
    vit = cls(**source["tiny"], **extra).eval()
    vit.load_state_dict({k[len("model."):]: v for k, v in saved.items() if k.startswith("model.")})
    patch_timm(vit, ToMe(), r=0)
    for sched, r in source["schedules"].items():
        vit.zoo_reduce.r = r if isinstance(r, int) else tuple(r)
        with torch.no_grad():
            logits = vit(saved["images"])
        assert torch.equal(vit.zoo_reduce.sizes, saved[f"{sched}.sizes"]), sched  # the same tokens merged, in order
        torch.testing.assert_close(logits, saved[f"{sched}.logits"], atol=1e-5, rtol=1e-5)


def test_constant_r_schedule_options():
    vit = tiny_vit("cls")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = vit(x)
        patch_timm(vit, ToMe(), r=[4, 0, 2])  # one r per block
        vit(x)
        assert vit.zoo_reduce.sizes.shape == (2, 17 - 6)
        vit.zoo_reduce.r = 100  # clipped to half the unprotected tokens, as in the official code
        vit(x)
        assert vit.zoo_reduce.sizes.shape == (2, 17 - 8 - 4 - 2)
        vit.zoo_reduce.r = 0
        torch.testing.assert_close(vit(x), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="one per block"):
        patch_timm(tiny_vit("cls"), ToMe(), r=[1, 2])
    with pytest.raises(ValueError, match="needs a ToMe reducer"):
        patch_timm(tiny_vit("cls"), PrunePool("prune"), r=2)
    with pytest.raises(ValueError, match="not both"):
        patch_timm(tiny_vit("cls"), ToMe(), keep=0.5, r=2)


@pytest.mark.parametrize("protect", [0, 1, 2, 3])
def test_merge_r_is_the_size_weighted_mean_its_slots_describe_with_gradients(protect):
    from zoo.reduce.merge import merge_r

    g = torch.Generator().manual_seed(protect)
    x = torch.randn(3, 21, 6, generator=g, requires_grad=True)
    sizes = torch.randint(1, 5, (3, 21), generator=g).float()
    out, out_sizes, slot = merge_r(x, sizes, torch.randn(3, 21, 4, generator=g), r=7, protect=protect)
    assert out.shape == (3, 14, 6) and torch.equal(slot[:, :protect], torch.arange(protect).expand(3, -1))
    # written out densely: output j is the size-weighted mean of the inputs whose slot is j
    member = F.one_hot(slot, 14).transpose(1, 2).float() * sizes[:, None, :]  # (B, M, N)
    torch.testing.assert_close(out_sizes, member.sum(-1))
    want = (member / member.sum(-1, keepdim=True)) @ x
    torch.testing.assert_close(out, want, atol=1e-6, rtol=1e-6)
    grad = torch.randn(out.shape, generator=g)
    got_grad, = torch.autograd.grad(out, x, grad)
    want_grad, = torch.autograd.grad(want, x, grad)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-6, rtol=1e-6)


def test_one_keep_round_merges_the_same_pairs_as_official_tome_with_cls():
    x = tokens(2, 17, 8)
    from zoo.reduce.merge import merge_r

    want_x, want_sizes, _ = merge_r(x, None, x, r=5, protect=1)  # official order: CLS, unmerged A, B
    red = ToMe()(x, keep=16 - 5, protect=1)  # ours keeps input order: compare as sets of (size, token)
    for s in range(2):
        a = sorted(zip(want_sizes[s].tolist(), want_x[s, :, 0].tolist()))
        b = sorted(zip(red.sizes[s].tolist(), red.x[s, :, 0].tolist()))
        assert [round(v, 5) for pair in a for v in pair] == [round(v, 5) for pair in b for v in pair]


# ----------------------------------------------------------------------------------------- towers from timm

TOWERS = {  # timm name -> overrides that make a tiny tower of the same architecture (pretrained=False)
    "vit_small_patch16_224": dict(img_size=64),
    "deit_tiny_distilled_patch16_224": dict(img_size=64),
    "vit_small_patch14_reg4_dinov2": dict(img_size=56),
    "vit_base_patch16_clip_224": dict(img_size=64),
    "vit_base_patch16_siglip_224": dict(img_size=64),
}


@pytest.mark.filterwarnings("ignore:global_pool")
@pytest.mark.parametrize("name", sorted(TOWERS))
def test_patch_timm_on_pretrained_tower_architectures(name):
    import timm

    torch.manual_seed(0)
    vit = timm.create_model(name, pretrained=False, depth=2, embed_dim=64, num_heads=2, **TOWERS[name]).eval()
    x = torch.rand(2, 3, *vit.patch_embed.img_size)
    n = vit.patch_embed.num_patches + vit.num_prefix_tokens
    with torch.no_grad():
        ref = vit(x)
        kind = type(vit)
        patch_timm(vit, ToMe(), keep=1.0)
        torch.testing.assert_close(vit(x), ref, atol=1e-5, rtol=1e-5)  # nothing reduced: the same model
        assert isinstance(vit, kind)  # a subclass (DeiT distilled) keeps its own pos-embed and heads
        vit.zoo_reduce.keep = 0.5
        assert torch.isfinite(vit(x)).all() and vit.zoo_reduce.last.sizes.sum(1).tolist() == [n, n]
        unpatch_timm(vit)
        patch_timm(vit, ToMe(), r=4)
        out = vit(x)
    assert torch.isfinite(out).all() and vit.zoo_reduce.sizes.shape == (2, n - 8)
    assert (vit.zoo_reduce.sizes[:, :vit.num_prefix_tokens] == 1).all()  # CLS / distillation / registers untouched
    unpatch_timm(vit)
    assert type(vit) is kind


@pytest.mark.parametrize("name", ["eva02_tiny_patch14_224", "vit_base_patch16_rope_224"])
def test_patch_timm_refuses_rope_towers_clearly(name):
    import timm

    vit = timm.create_model(name, pretrained=False, depth=1)
    with pytest.raises(ValueError, match="EVA / RoPE"):
        patch_timm(vit, ToMe(), r=2)
