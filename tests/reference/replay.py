"""The CUDA kernels' random streams and per-net arithmetic, replayed in plain Python / numpy.

Written from the published algorithms and the kernels' documented draw order, never from the
kernels' code or output: xoroshiro128+ (Blackman & Vigna, numba's 2016 rotations 55, 14, 36)
on states seeded as raw ``PCG64(SeedSequence([seed, tag]))`` words, Box–Muller on float64
uniforms; one block per net (net n on block ``n mod blocks``), thread ``tid`` of a block of
``min(next_pow2(width), max_threads)`` threads drawing the rows ``i ≡ tid (mod threads)``.
Nothing here imports vanishcalc.  Used by the same-streams tests of ``tests/sim`` (composed
stacks, RNNs, recurrent BN / LN, RBF, residual / dropout).
"""
from __future__ import annotations

import math

import numpy as np

_M64 = (1 << 64) - 1


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & _M64


class Stream:
    """xoroshiro128+ (Blackman & Vigna) and Box–Muller on float64 uniforms, in plain Python."""

    def __init__(self, s0, s1):
        self.s0, self.s1 = int(s0), int(s1)

    def normal_pair(self):
        """Both Box–Muller normals of one uniform pair (``sim/cuda/dense.py``'s kernel)."""
        u1, u2 = self.uniform(), self.uniform()
        r = math.sqrt(-2.0 * math.log(1.0 - u1))
        return r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)

    def normal(self):
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)

    def uniform(self):
        s0, s1 = self.s0, self.s1
        r = (s0 + s1) & _M64
        s1 ^= s0
        self.s0 = _rotl(s0, 55) ^ s1 ^ ((s1 << 14) & _M64)
        self.s1 = _rotl(s1, 36)
        return (r >> 11) * 2.0 ** -53


class KernelStreams:
    """The per-thread streams of a one-block-per-net kernel launch, and its row ownership."""

    def __init__(self, seed, tag, n_nets, width, max_threads=256, max_blocks=2048):
        self.threads = min(1 << (width - 1).bit_length(), max_threads)
        self.blocks = min(n_nets, max_blocks)
        n = self.blocks * self.threads
        w = np.random.PCG64(np.random.SeedSequence([seed, tag])).random_raw(2 * n).reshape(n, 2)
        self.streams = [Stream(a if (a or b) else 1, b) for a, b in w]   # all-zero state → 1
        self.width = width

    def rows(self, net, draw):
        """Call ``draw(i, stream)`` for every row, each row from its owner thread's stream."""
        for tid in range(self.threads):
            st = self.streams[(net % self.blocks) * self.threads + tid]
            for i in range(tid, self.width, self.threads):
                draw(i, st)

    def batch(self, net, batch, q0, c0):
        """The input batch X = √q0(√c0 g + √(1−c0) e_b) and the tangent V ~ N(0, 1), row by
        row: g, then per column e_b and v_b."""
        X, V = np.empty((self.width, batch)), np.empty((self.width, batch))

        def init(i, st):
            g = st.normal()
            for b in range(batch):
                X[i, b] = math.sqrt(q0 * c0) * g + math.sqrt(q0 * (1 - c0)) * st.normal()
                V[i, b] = st.normal()
        self.rows(net, init)
        return X, V

    def dense(self, net, sigma_w, sigma_b):
        """W (σw²/N) and the bias column (σb², not drawn when σb = 0), row i: W_i· then b_i."""
        n = self.width
        W, bias = np.empty((n, n)), np.zeros((n, 1))

        def draw(i, st):
            W[i] = [sigma_w / math.sqrt(n) * st.normal() for _ in range(n)]
            bias[i] = sigma_b * st.normal() if sigma_b > 0 else 0.0
        self.rows(net, draw)
        return W, bias

    def rnn_weights(self, net, batch, sigma_w, sigma_u, sigma_b):
        """An RNN's W, U (interleaved per column j), b and the initial tangent δa_1, row by row."""
        n = self.width
        W, U, b = np.empty((n, n)), np.empty((n, n)), np.empty((n, 1))
        D = np.empty((n, batch))

        def init(i, st):
            for j in range(n):
                W[i, j] = sigma_w / math.sqrt(n) * st.normal()
                U[i, j] = sigma_u / math.sqrt(n) * st.normal()
            b[i] = sigma_b * st.normal()
            D[i] = [st.normal() for _ in range(batch)]
        self.rows(net, init)
        return W, U, b, D

    def rnn_inputs(self, net, batch, x2, x_corr):
        """One step's inputs x_b = √x2(√ρ g + √(1−ρ) e_b), row by row."""
        xs = np.empty((self.width, batch))

        def inputs(i, st):
            g = st.normal()
            xs[i] = [math.sqrt(x2 * x_corr) * g + math.sqrt(x2 * (1 - x_corr)) * st.normal()
                     for _ in range(batch)]
        self.rows(net, inputs)
        return xs


def stats(X, V):
    """(q, c, ‖V‖²): mean of X², the batch-mean pairwise covariance over the batch / (N q)."""
    N, B = X.shape
    tot = np.sum(X * X)
    q = tot / (N * B)
    c = (np.sum(np.sum(X, axis=1) ** 2) - tot) / (B * (B - 1.0)) / (N * q)
    return q, c, np.sum(V * V)


def standardize_rows(X, V, g, b):
    """Rows of X over columns (population std); V by the Jacobian (the formula written out)."""
    m = X.mean(1, keepdims=True)
    s = np.sqrt(((X - m) ** 2).mean(1, keepdims=True))
    u = (X - m) / s
    P = V - V.mean(1, keepdims=True)
    return g * u + b, g * (P - u * np.mean(u * P, 1, keepdims=True)) / s


__all__ = ["Stream", "KernelStreams", "stats", "standardize_rows"]
