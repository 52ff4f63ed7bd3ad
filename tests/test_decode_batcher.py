"""The server's decode batcher: chunks of concurrent streams decoded in one call give each stream what decoding it
alone gives (to float rounding), whatever the mix of chunk sizes, fresh and running states, phones and voices, and
from many threads at once."""
import threading

import numpy as np
import torch

import task_models as tm
from tokenwave.codec.decoders import with_phone_decoder
from tokenwave.serve.audio import DecodeBatcher, DecoderState
from tokenwave.tasks.sources import Chunker

TOL = 1e-5


def _alone(codec, pieces, frames=None, voice=None):
    """Each piece decoded by the stream alone, then its tail: the reference."""
    state, out = DecoderState(codec, DecodeBatcher()), []
    for i, c in enumerate(pieces):
        out.append(state.push(c, None if frames is None else frames[i], voice))
    return np.concatenate(out + [state.flush()])


def test_streams_decoded_together_equal_each_alone_and_take_fewer_calls():
    codec = tm.tiny_codec()
    g = torch.Generator().manual_seed(0)
    K, n_streams = 2, 5
    chunks = [2, 4, 8, 16, 16, 16]  # the server's growing chunks
    codes = [[torch.randint(0, codec.codebook_size, (K, n), generator=g) for n in chunks] for _ in range(n_streams)]
    ref = [_alone(codec, c) for c in codes]
    batcher = DecodeBatcher()
    states = [DecoderState(codec, batcher) for _ in range(n_streams)]
    got = [[] for _ in range(n_streams)]
    for step in range(len(chunks)):
        # streams 3 and 4 start two chunks late: fresh states beside running ones, and different chunk sizes
        live = [s for s in range(n_streams) if step >= (2 if s >= 3 else 0)]
        outs = batcher.decode_together([(states[s], codes[s][step - (2 if s >= 3 else 0)], None, None) for s in live])
        for s, o in zip(live, outs):
            got[s].append(o)
    for s in (3, 4):  # their last two chunks
        for step in (len(chunks) - 2, len(chunks) - 1):
            got[s].append(batcher.decode_together([(states[s], codes[s][step], None, None)])[0])
    for s in range(n_streams):
        audio = np.concatenate(got[s] + [states[s].flush()])
        assert audio.shape == ref[s].shape and np.abs(audio - ref[s]).max() < TOL, s
    # 30 chunks in 13 calls: one per step for the first three streams, one more per step while the late two differ
    # from them in chunk size (steps 2-4), one for all five once their chunks and states match (step 5), then the
    # late two's last chunks asked one by one (4)
    assert batcher.chunks == n_streams * len(chunks) == 30 and batcher.calls == 2 + 3 * 2 + 1 + 4


def test_phone_and_voice_decoders_batch_per_stream():
    codec = with_phone_decoder(tm.tiny_codec(), tm.PHONES, voice=True)
    tm.randomise(codec.decoder, 7)  # phones and voices change the audio
    g = torch.Generator().manual_seed(1)
    K, chunks = 2, [4, 8, 16]
    streams = []
    for s in range(3):
        codes = [torch.randint(0, codec.codebook_size, (K, n), generator=g) for n in chunks]
        frames = [torch.randint(0, 8, (1, 3, n), generator=g) for n in chunks]
        streams.append((codes, frames, torch.randn(1, codec.cfg.latent_dim, generator=g)))
    ref = [_alone(codec, c, f, v) for c, f, v in streams]
    assert not np.allclose(ref[0], ref[1])
    batcher = DecodeBatcher()
    states = [DecoderState(codec, batcher) for _ in streams]
    got = [[] for _ in streams]
    for step in range(len(chunks)):
        outs = batcher.decode_together([(st, c[step], f[step], v) for st, (c, f, v) in zip(states, streams)])
        for s, o in enumerate(outs):
            got[s].append(o)
    for s, st in enumerate(states):
        assert np.abs(np.concatenate(got[s] + [st.flush()]) - ref[s]).max() < TOL
    assert batcher.calls == len(chunks)


def test_concurrent_pushes_from_threads_are_each_streams_audio():
    codec = tm.tiny_codec()
    g = torch.Generator().manual_seed(2)
    batcher = DecodeBatcher()
    n_streams, chunks = 8, [2, 4, 8] + [16] * 6
    codes = [[torch.randint(0, codec.codebook_size, (2, n), generator=g) for n in chunks] for _ in range(n_streams)]
    ref = [_alone(codec, c) for c in codes]
    out, errors = [None] * n_streams, []
    start = threading.Barrier(n_streams)

    def run(s):
        try:
            state = DecoderState(codec, batcher)
            start.wait()
            out[s] = np.concatenate([state.push(c) for c in codes[s]] + [state.flush()])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(n_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for s in range(n_streams):
        assert out[s].shape == ref[s].shape and np.abs(out[s] - ref[s]).max() < TOL
    assert batcher.chunks == n_streams * len(chunks)


def test_default_chunks_keep_a_player_with_a_small_buffer_fed():
    """Frames pushed one at a time: 2, 4, then 8 frames a chunk until 1.6 s were sent, then 16; a fixed size stays
    fixed. Each default chunk arrives in time for a player that starts 100 ms after the first chunk when the frames
    come at 1.05x real time (a chunk of c s is ready c / 1.05 s after the one before)."""
    def sizes(chunker, frames=400):
        out = []
        for _ in range(frames):
            got = chunker.add(torch.zeros(2, 1, dtype=torch.long))
            if got is not None:
                out.append(got.shape[-1])
        return out

    got = sizes(Chunker())
    settled = next(i for i, n in enumerate(got) if n == 16)
    assert got[:3] == [2, 4, 8] and set(got[2:settled]) == {8} and set(got[settled:]) == {16}
    assert sum(got[:settled]) >= Chunker.SETTLED > sum(got[:settled - 1])
    assert sizes(Chunker(5), 50) == [5] * 10
    # a later sentence of an utterance: settled from its first chunk once 1.6 s were sent before it, else ramped again
    assert set(sizes(Chunker(sent=Chunker.SETTLED), 64)) == {16}
    assert sizes(Chunker(sent=Chunker.SETTLED - 20), 14) == [2, 4, 8]
    assert sizes(Chunker(sent=Chunker.SETTLED - 1), 18) == [2, 16]
    assert sizes(Chunker(5, sent=500), 50) == [5] * 10
    speed, buffer, hop = 1.05, 0.1, 1 / 75
    made, played = got[0] * hop / speed, got[0] * hop  # when each chunk is ready; audio the player was given
    for n in got[1:]:
        made += n * hop / speed
        assert made <= got[0] * hop / speed + buffer + played  # the player still holds audio when it arrives
        played += n * hop
