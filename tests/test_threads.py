"""zoo.nn.threads: one thread per op inside small-op models, independent work over a pool, same results."""

import threading
from dataclasses import dataclass

import torch

from zoo.audio.codec import Codec, CodecConfig
from zoo.nn.threads import map_threads, one_thread_per_op, op_threads
from zoo.tokenizer import Tokenizer, Tokens


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


def test_one_thread_per_op_gives_the_pool_the_callers_thread_count():
    def f():
        with one_thread_per_op():
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



@dataclass
class EchoConfig:
    pass


class Echo(Tokenizer):
    """Ids are the input itself; records each call the base class makes."""

    family = "echo-test"
    config_class = EchoConfig
    encode_knobs = ()
    decode_options = ()

    def __init__(self, config):
        super().__init__(config)
        self.calls = []

    def encode(self, x):
        self.calls.append((x.shape[0], torch.get_num_threads()))
        return Tokens(ids=x.long(), lengths=torch.full((x.shape[0],), x.shape[1]))

    def decode(self, tokens):
        self.calls.append((tokens.batch_size, torch.get_num_threads()))
        return tokens.ids.float()


def test_the_base_class_spreads_pieces_of_a_batch_not_ops():
    tok = Echo(EchoConfig())
    x = torch.arange(30.0).view(10, 3)
    with op_threads(2):
        t = tok.encode(x)
        assert torch.get_num_threads() == 2
    assert sorted(tok.calls) == [(2, 1), (4, 1), (4, 1)]  # pieces of parallel_chunk = 4, each op on one thread
    assert torch.equal(t.ids, x.long())  # joined back in order
    tok.calls.clear()
    assert torch.equal(tok.decode(t, batch_size=3), x)
    assert sorted(tok.calls) == [(1, 1), (3, 1), (3, 1), (3, 1)]  # batch_size below the piece size wins


def test_nested_map_threads_run_inside_the_worker_without_deadlock():
    def outer(i):
        me = threading.get_ident()
        inner = map_threads(lambda j: (j, threading.get_ident() == me), range(3), threads=2)
        return i, inner

    out = map_threads(outer, range(4), threads=2)
    assert [i for i, _ in out] == list(range(4))
    assert all(inner == [(0, True), (1, True), (2, True)] for _, inner in out)
