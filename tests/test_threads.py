"""zoo.nn.threads: one thread per op inside small-op models, independent work over a pool, same results."""

import threading

import torch

from zoo.audio.codec import Codec, CodecConfig
from zoo.nn.threads import map_threads, op_threads, small_ops


def test_op_threads_sets_and_restores():
    before = torch.get_num_threads()
    with op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_map_threads_keeps_order_and_autograd_mode_and_uses_a_pool():
    seen = set()

    def work(i):
        seen.add(threading.get_ident())
        assert torch.get_num_threads() == 1  # each op on one thread
        return i, torch.is_grad_enabled()

    with torch.no_grad():
        out = map_threads(work, range(8), threads=2)
    assert [i for i, _ in out] == list(range(8))
    assert not any(grad for _, grad in out)  # the workers ran under the caller's no_grad
    assert len(seen) >= 1


def test_small_ops_gives_the_pool_the_callers_thread_count():
    @small_ops
    def f():
        return torch.get_num_threads(), map_threads(lambda _: torch.get_num_threads(), [0, 1])

    with op_threads(2):
        ops, inner = f()
        assert torch.get_num_threads() == 2
    assert ops == 1 and inner == [1, 1]


def test_codec_ids_and_audio_identical_on_any_thread_count():
    torch.manual_seed(0)
    tok = Codec(CodecConfig.from_name("tiny", chunk_seconds=0.1)).eval()
    wav = (torch.randn(2, 1, 16000) * 0.3).clamp(-1, 1)  # 1 s: ten chunks
    results = []
    for n in (1, 2, 3):
        with op_threads(n):
            t = tok.encode(wav)
            results.append((t.ids, tok.decode(t)))
            assert torch.get_num_threads() == n  # the call restored the caller's count
    for ids, audio in results[1:]:
        assert torch.equal(ids, results[0][0])
        assert torch.equal(audio, results[0][1])
