"""Ring GEMM and conv2d mod 2^64 against numpy / exact integer references."""
import numpy as np
import pytest
import torch

import pi_native

U64 = np.uint64


def rand_u64(rng, shape):
    return rng.integers(0, 2**64, size=shape, dtype=U64, endpoint=False)


def bigint_matmul(a, b):
    """Exact reference with Python integers, reduced mod 2^64."""
    ao, bo = a.astype(object), b.astype(object)
    return (ao.dot(bo) % (1 << 64)).astype(U64)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = pi_native.get_num_threads()
    pi_native.set_num_threads(request.param)
    yield request.param
    pi_native.set_num_threads(old)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 7), (4, 8, 8), (17, 300, 9), (5, 600, 1100),
                                   (64, 64, 64), (130, 33, 3), (2, 3, 0), (0, 3, 2)])
def test_matmul_matches_numpy(threads, m, k, n):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, b = rand_u64(rng, (m, k)), rand_u64(rng, (k, n))
    np.testing.assert_array_equal(pi_native.ring_matmul(a, b), a @ b)


def test_matmul_exact_against_bigints_and_edges():
    rng = np.random.default_rng(0)
    edges = np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**32, 2**32 - 1], dtype=U64)
    a = rng.choice(edges, (9, 13)).astype(U64)
    b = rng.choice(edges, (13, 11)).astype(U64)
    np.testing.assert_array_equal(pi_native.ring_matmul(a, b), bigint_matmul(a, b))
    np.testing.assert_array_equal(pi_native.ring_matmul(a, np.zeros((13, 0), U64)), np.zeros((9, 0), U64))
    np.testing.assert_array_equal(pi_native.ring_matmul(np.zeros((2, 0), U64), np.zeros((0, 3), U64)),
                                  np.zeros((2, 3), U64))


def test_signed_values_in_twos_complement():
    rng = np.random.default_rng(3)
    a = rng.integers(-1000, 1000, (6, 10), dtype=np.int64)
    b = rng.integers(-1000, 1000, (10, 4), dtype=np.int64)
    got = pi_native.ring_matmul(a.view(U64), b.view(U64)).view(np.int64)
    np.testing.assert_array_equal(got, a @ b)


def test_zero_size_k():
    out = pi_native.ring_matmul(np.zeros((3, 0), U64), np.zeros((0, 4), U64))
    np.testing.assert_array_equal(out, np.zeros((3, 4), U64))


def reference_conv2d(x, w, stride, padding):
    """Direct sliding-window conv2d with wrapping uint64 arithmetic."""
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), U64)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, oc, oh, ow), U64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]        # n, c, oh, ow
            y += np.einsum("ncxy,oc->noxy", patch, w[:, :, i, j])
    return y


@pytest.mark.parametrize("shape,wshape,stride,padding", [
    ((1, 1, 5, 5), (1, 1, 3, 3), (1, 1), (0, 0)),
    ((2, 3, 8, 7), (4, 3, 3, 3), (1, 1), (1, 1)),
    ((1, 4, 9, 9), (5, 4, 3, 3), (2, 2), (1, 1)),
    ((3, 2, 6, 10), (3, 2, 1, 1), (2, 3), (0, 0)),
    ((1, 2, 4, 4), (2, 2, 5, 5), (1, 1), (2, 2)),
    ((1, 16, 14, 14), (32, 16, 3, 3), (2, 2), (1, 1)),
])
def test_conv2d_matches_reference(threads, shape, wshape, stride, padding):
    rng = np.random.default_rng(sum(shape) + sum(wshape))
    x, w = rand_u64(rng, shape), rand_u64(rng, wshape)
    got = pi_native.ring_conv2d(x, w, stride, padding)
    np.testing.assert_array_equal(got, reference_conv2d(x, w, stride, padding))


def test_conv2d_agrees_with_torch_on_small_signed_integers():
    rng = np.random.default_rng(5)
    x = rng.integers(-50, 50, (2, 3, 9, 9), dtype=np.int64)
    w = rng.integers(-50, 50, (4, 3, 3, 3), dtype=np.int64)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                          stride=2, padding=1).long().numpy()
    got = pi_native.ring_conv2d(x.view(U64), w.view(U64), (2, 2), (1, 1)).view(np.int64)
    np.testing.assert_array_equal(got, expected)


def test_clear_errors():
    a = np.zeros((2, 3), U64)
    with pytest.raises(TypeError, match="uint64"):
        pi_native.ring_matmul(a.astype(np.int64), a.T.copy())
    with pytest.raises(TypeError, match="uint64"):
        pi_native.ring_matmul(a.astype(np.float64), a.T.copy())
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 3\)"):
        pi_native.ring_matmul(a, a)
    x, w = np.zeros((1, 2, 4, 4), U64), np.zeros((1, 3, 3, 3), U64)
    with pytest.raises(ValueError, match="channels"):
        pi_native.ring_conv2d(x, w)
    with pytest.raises(ValueError, match="larger than the padded input"):
        pi_native.ring_conv2d(np.zeros((1, 3, 2, 2), U64), w)
    with pytest.raises(ValueError, match="stride"):
        pi_native.ring_conv2d(np.zeros((1, 3, 4, 4), U64), w, (0, 1))


def test_non_contiguous_input_is_handled():
    rng = np.random.default_rng(9)
    a = rand_u64(rng, (8, 6))
    b = rand_u64(rng, (8, 6))
    np.testing.assert_array_equal(pi_native.ring_matmul(a, b.T), a @ b.T)
