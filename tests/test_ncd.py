import zlib

import numpy as np

from bot.ncd import clen, cross_distances, ncd, pair_distances

A = b"Traceback\nConnectionResetError: [Errno 104] Connection reset by peer\n" * 3
B = b"Traceback\nAssertionError: assert 3 == 4 where 3 = count_users()\n" * 3


def test_cockpit_formula_and_identity():
    ca, cb, cab = (len(zlib.compress(x, 6)) for x in (A, B, A + B))
    assert ncd(A, B, symmetric=False) == (cab - min(ca, cb)) / max(ca, cb)
    assert ncd(A, A) == 0.0
    assert 0.0 < ncd(A, B) <= 1.1


def test_symmetric_by_default_and_not_in_cockpit_mode():
    texts = [b"x" * 300 + b"abc" * 40, b"abcdefgh" * 80 + b"y" * 10]
    assert ncd(texts[0], texts[1]) == ncd(texts[1], texts[0])
    one_sided = ncd(texts[0], texts[1], symmetric=False), ncd(texts[1], texts[0], symmetric=False)
    assert one_sided[0] != one_sided[1]
    assert ncd(texts[0], texts[1]) == min(one_sided)


def test_similar_texts_are_nearer_than_different_ones():
    near = A.replace(b"104", b"110")
    assert ncd(A, near) < 0.3 < ncd(A, B)


def test_batched_distances_match_single_ones_with_threads():
    texts = [A, B, A + B, B[:40]]
    lengths = [clen(t) for t in texts]
    pairs = np.array([[0, 1], [1, 2], [3, 0]])
    got = pair_distances(texts, lengths, pairs, n_jobs=2)
    assert np.allclose(got, [ncd(texts[i], texts[j]) for i, j in pairs])
    rows = cross_distances([B], [clen(B)], texts, lengths, columns=[[2, 0]], n_jobs=2)
    assert np.allclose(rows[0], [ncd(B, texts[2]), ncd(B, texts[0])])
