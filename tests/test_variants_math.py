"""Variant math against plain NumPy references: the prioritized-replay sum tree, the C51
projection and truncation-aware n-step returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn.algorithm import distributional, nstep, prioritized


# ----------------------------------------------------------------------------- references
def np_build_tree(leaf_values: np.ndarray) -> np.ndarray:
    """A float32 sum tree rebuilt from scratch: every parent is left + right in float32."""
    p = leaf_values.shape[0]
    nodes = np.zeros(2 * p, np.float32)
    nodes[p:] = leaf_values.astype(np.float32)
    for i in range(p - 1, 0, -1):
        nodes[i] = np.float32(nodes[2 * i] + nodes[2 * i + 1])
    return nodes


def np_importance_weights(leaf_values, indices, num_valid, beta):
    p = np.asarray(leaf_values, np.float64)
    prob = p[indices] / p.sum()
    w = (num_valid * prob) ** (-beta)
    return w / w.max()


def np_c51_project(next_probs, reward, discount, z, fix_integral=True):
    """Bellemare et al. 2017, Algorithm 1, float64 loops (with the l == u fix unless disabled)."""
    batch, num_atoms = next_probs.shape
    v_min, v_max = z[0], z[-1]
    dz = (v_max - v_min) / (num_atoms - 1)
    out = np.zeros((batch, num_atoms), np.float64)
    for b_i in range(batch):
        for j in range(num_atoms):
            tz = min(max(reward[b_i] + discount[b_i] * z[j], v_min), v_max)
            b = (tz - v_min) / dz
            lo, hi = int(np.floor(b)), int(np.ceil(b))
            p = next_probs[b_i, j]
            if fix_integral and lo == hi:
                out[b_i, lo] += p
            else:
                out[b_i, lo] += p * (hi - b)
                out[b_i, hi] += p * (b - lo)
    return out


def project(probs, reward, discount, num_atoms, v_min, v_max) -> np.ndarray:
    """distributional.project (jitted) on NumPy inputs, in float32."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    support = distributional.support(num_atoms, v_min, v_max)
    return np.asarray(jax.jit(distributional.project)(f32(probs), f32(reward), f32(discount), support))


def np_nstep(rewards, terminated, truncated, gamma, n):
    batch = rewards.shape[0]
    returns = np.zeros(batch, np.float64)
    discounts = np.zeros(batch, np.float64)
    last = np.zeros(batch, np.int64)
    for b in range(batch):
        g, k = 0.0, n
        for i in range(n):
            g += gamma**i * rewards[b, i]
            if terminated[b, i] or truncated[b, i]:
                k = i + 1
                break
        returns[b] = g
        last[b] = k - 1
        discounts[b] = 0.0 if terminated[b, k - 1] else gamma**k
    return returns, discounts, last


# ----------------------------------------------------------------------------- sum tree
def test_init_shapes():
    for capacity, p in [(1, 1), (2, 2), (3, 4), (1000, 1024), (1024, 1024)]:
        tree = prioritized.init(capacity)
        assert tree.nodes.shape == (2 * p,) and tree.nodes.dtype == jnp.float32
        assert float(tree.max_priority) == 1.0
        assert float(prioritized.total(tree)) == 0.0


def test_set_matches_numpy_and_children_sums():
    rng = np.random.default_rng(0)
    capacity = 1000
    tree = prioritized.init(capacity)
    leaf_ref = np.zeros(1024, np.float64)
    set_jit = jax.jit(prioritized.set)
    for _ in range(50):
        idx = rng.integers(0, capacity, size=32)
        pr = rng.exponential(size=32).astype(np.float32)
        for i, v in zip(idx, pr):
            leaf_ref[i] = v
        tree = set_jit(tree, jnp.asarray(idx, jnp.int32), jnp.asarray(pr))
        np.testing.assert_allclose(float(prioritized.total(tree)), leaf_ref.sum(), rtol=1e-5)
    nodes = np.asarray(tree.nodes)
    np.testing.assert_array_equal(nodes[1024:], leaf_ref.astype(np.float32))
    np.testing.assert_array_equal(nodes[1:1024], nodes[2::2] + nodes[3::2])
    np.testing.assert_array_equal(nodes[1:], np_build_tree(leaf_ref)[1:])


def test_no_drift_over_10k_rounds():
    """10_000 rounds of updates on a 2**14 tree: root == float64 leaf sum, tree == rebuild."""
    p, batch, rounds = 2**14, 64, 10_000
    key_idx, key_pr = jax.random.split(jax.random.PRNGKey(1))
    all_idx = jax.random.randint(key_idx, (rounds, batch), 0, p)
    # wide dynamic range plus exact zeros, the regime where incremental float32 trees drift
    all_pr = jnp.exp(jax.random.uniform(key_pr, (rounds, batch), minval=-12.0, maxval=6.0))
    all_pr = jnp.where(jnp.arange(batch) % 7 == 0, 0.0, all_pr)

    @jax.jit
    def run(tree):
        def body(t, xs):
            return prioritized.set(t, *xs), None

        return jax.lax.scan(body, tree, (all_idx, all_pr))[0]

    tree = run(prioritized.init(p))
    nodes = np.asarray(tree.nodes)
    leaf_vals = nodes[p:]
    # leaves are the last write of each index, replayed in NumPy
    ref = np.zeros(p, np.float32)
    for i_row, p_row in zip(np.asarray(all_idx), np.asarray(all_pr)):
        ref[i_row] = p_row  # NumPy fancy assignment: last duplicate wins
    np.testing.assert_array_equal(leaf_vals, ref)
    np.testing.assert_allclose(nodes[1], leaf_vals.astype(np.float64).sum(), rtol=1e-5)
    np.testing.assert_array_equal(nodes[1:p], nodes[2::2] + nodes[3::2])
    rebuilt = np_build_tree(leaf_vals)
    np.testing.assert_array_equal(nodes[1:], rebuilt[1:])
    np.testing.assert_allclose(float(tree.max_priority), max(1.0, float(all_pr.max())), rtol=0)


def test_duplicate_indices_last_write_wins():
    rng = np.random.default_rng(2)
    tree = prioritized.init(64)
    tree = prioritized.set(tree, jnp.array([5, 5, 5, 9], jnp.int32), jnp.array([1.0, 2.0, 3.0, 4.0]))
    assert float(prioritized.get(tree, jnp.array([5]))[0]) == 3.0
    assert float(prioritized.total(tree)) == 7.0
    assert float(tree.max_priority) == 4.0
    ref = np.asarray(prioritized.leaves(tree), np.float64).copy()
    set_jit = jax.jit(prioritized.set)
    for _ in range(20):
        idx = rng.integers(0, 50, size=200)  # many duplicates
        pr = rng.uniform(0.0, 10.0, size=200).astype(np.float32)
        for i, v in zip(idx, pr):
            ref[i] = v
        tree = set_jit(tree, jnp.asarray(idx, jnp.int32), jnp.asarray(pr))
        np.testing.assert_array_equal(np.asarray(prioritized.leaves(tree)), ref.astype(np.float32))
        np.testing.assert_allclose(float(prioritized.total(tree)), ref.sum(), rtol=1e-5)
    # an overwritten-in-the-same-call value never counts as "set"
    tree = prioritized.set(prioritized.init(8), jnp.array([0, 0], jnp.int32), jnp.array([50.0, 2.0]))
    assert float(tree.max_priority) == 2.0


def _chi_square_bound(dof: int) -> float:
    return dof + 6.0 * np.sqrt(2.0 * dof)


def test_sampling_frequencies_proportional():
    rng = np.random.default_rng(3)
    capacity, num_valid, batch, draws = 1000, 700, 1000, 200
    pr = rng.exponential(size=num_valid).astype(np.float32) ** 2
    pr[rng.random(num_valid) < 0.2] = 0.0
    tree = prioritized.set(prioritized.init(capacity), jnp.arange(num_valid, dtype=jnp.int32), pr)
    keys = jax.random.split(jax.random.PRNGKey(4), draws)
    sample = jax.jit(jax.vmap(prioritized.sample, in_axes=(None, 0, None, None)), static_argnums=2)
    idx = np.asarray(sample(tree, keys, batch, jnp.int32(num_valid))).reshape(-1)
    assert idx.dtype == np.int32 and idx.min() >= 0 and idx.max() < num_valid
    counts = np.bincount(idx, minlength=num_valid)
    assert counts[pr == 0].sum() == 0
    total_draws = batch * draws
    pos = pr > 0
    expected = total_draws * pr[pos].astype(np.float64) / pr.astype(np.float64).sum()
    chi2 = np.sum((counts[pos] - expected) ** 2 / expected)
    bound = _chi_square_bound(int(pos.sum()) - 1)
    assert chi2 < bound, (chi2, bound)
    # the bound has teeth: uniform sampling over the valid range fails it
    uniform = np.bincount(rng.integers(0, num_valid, total_draws), minlength=num_valid)
    chi2_uniform = np.sum((uniform[pos] - expected) ** 2 / expected)
    assert chi2_uniform > 10 * bound
    assert np.abs(counts / total_draws - pr / pr.sum()).max() < 2e-3


@pytest.mark.parametrize("capacity", [1, 3, 1000, 777])
def test_sampling_never_hits_zero_or_invalid(capacity):
    rng = np.random.default_rng(capacity)
    num_valid = max(1, capacity - 1)
    nonzero = np.unique(np.r_[rng.integers(0, num_valid, 3), num_valid - 1])
    # extreme dynamic range: the small leaves are below the float32 resolution of the total
    values = np.array([1e8, 1e-3, 1e-30, 3.0][: len(nonzero)], np.float32)
    tree = prioritized.set(prioritized.init(capacity), jnp.asarray(nonzero, jnp.int32), values)
    keys = jax.random.split(jax.random.PRNGKey(5), 100)
    sample = jax.jit(jax.vmap(prioritized.sample, in_axes=(None, 0, None, None)), static_argnums=2)
    idx = np.asarray(sample(tree, keys, 512, num_valid)).reshape(-1)
    assert idx.min() >= 0 and idx.max() < num_valid
    assert np.isin(idx, nonzero).all()
    assert (np.asarray(prioritized.leaves(tree))[idx] > 0).all()


def test_sampling_guard_on_adversarial_rounding():
    """Draws pinned at the top of [0, total) still land on positive leaves."""
    p = 16
    pr = np.zeros(p, np.float32)
    pr[[0, 5, 6]] = [1e-7, 1.0, 1e-8]
    tree = prioritized.set(prioritized.init(p), jnp.arange(p, dtype=jnp.int32), pr)
    # the leaves of 1e-7 and 1e-8 are below the float32 resolution of the total (~1)
    keys = jax.random.split(jax.random.PRNGKey(6), 2000)
    sample = jax.jit(jax.vmap(prioritized.sample, in_axes=(None, 0, None, None)), static_argnums=2)
    idx = np.asarray(sample(tree, keys, 64, p))
    assert (pr[idx.reshape(-1)] > 0).all()


def test_sampling_clamps_to_num_valid():
    """Stale priorities beyond num_valid are never returned (clamped to num_valid - 1)."""
    tree = prioritized.set(prioritized.init(32), jnp.array([3, 20], jnp.int32), jnp.array([1.0, 1.0]))
    sample = jax.jit(prioritized.sample, static_argnums=2)
    idx = np.asarray(sample(tree, jax.random.PRNGKey(0), 256, 10))
    assert idx.max() <= 9
    assert set(np.unique(idx)) <= {3, 9}


def test_importance_weights():
    rng = np.random.default_rng(7)
    capacity, num_valid = 500, 300
    pr = rng.uniform(0.01, 5.0, size=num_valid).astype(np.float32)
    tree = prioritized.set(prioritized.init(capacity), jnp.arange(num_valid, dtype=jnp.int32), pr)
    leaf_vals = np.asarray(prioritized.leaves(tree))
    weights = jax.jit(prioritized.importance_weights)
    for beta in (0.0, 0.4, 1.0):
        idx = rng.integers(0, num_valid, size=64)
        w = np.asarray(weights(tree, jnp.asarray(idx, jnp.int32), num_valid, beta))
        np.testing.assert_allclose(w, np_importance_weights(leaf_vals, idx, num_valid, beta), rtol=1e-5)
        assert w.max() == pytest.approx(1.0, abs=1e-7)


def test_priorities_and_beta_schedule():
    td = np.array([-2.0, 0.0, 0.5, 3.0], np.float32)
    for alpha in (0.0, 0.6, 1.0):
        np.testing.assert_allclose(
            np.asarray(prioritized.priorities_from_td(jnp.asarray(td), alpha)),
            (np.abs(td.astype(np.float64)) + 1e-6) ** alpha,
            rtol=1e-6,
        )
    beta = jax.jit(prioritized.beta_at)
    assert float(beta(0, 0.4, 100)) == pytest.approx(0.4)
    assert float(beta(50, 0.4, 100)) == pytest.approx(0.7)
    assert float(beta(100, 0.4, 100)) == pytest.approx(1.0)
    assert float(beta(1000, 0.4, 100)) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- C51
def _random_probs(rng, batch, num_atoms):
    x = rng.exponential(size=(batch, num_atoms))
    x[rng.random((batch, num_atoms)) < 0.3] = 0.0
    x[:, 0] += 1e-3
    return x / x.sum(axis=1, keepdims=True)


def test_support():
    z = np.asarray(distributional.support(51, -10.0, 10.0))
    np.testing.assert_allclose(z, np.linspace(-10, 10, 51), atol=1e-6)


def test_projection_random_matches_algorithm_1():
    rng = np.random.default_rng(8)
    batch, num_atoms, v_min, v_max = 256, 51, -10.0, 10.0
    z = np.linspace(v_min, v_max, num_atoms)
    probs = _random_probs(rng, batch, num_atoms)
    reward = rng.normal(scale=8.0, size=batch)  # a good share outside [v_min, v_max]
    reward[:10] = [-50, 50, -10, 10, 0, 11, -11, 1e6, -1e6, 9.99]
    discount = rng.choice([0.0, 0.5, 0.9, 0.99, 1.0], size=batch)
    discount[::5] = rng.uniform(0, 1, size=len(discount[::5]))
    got = project(probs, reward, discount, num_atoms, v_min, v_max)
    ref = np_c51_project(probs, reward, discount, z)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert (got >= 0).all()


def test_projection_exact_atoms_and_terminals():
    """Tz on atoms exactly (l == u): Algorithm 1 as printed loses that mass; we keep it."""
    rng = np.random.default_rng(9)
    batch, num_atoms, v_min, v_max = 64, 21, -10.0, 10.0  # dz = 1
    z = np.linspace(v_min, v_max, num_atoms)
    probs = _random_probs(rng, batch, num_atoms)
    reward = rng.integers(-15, 16, size=batch).astype(np.float64)  # integers: Tz on atoms
    discount = rng.choice([0.0, 1.0], size=batch)
    got = project(probs, reward, discount, num_atoms, v_min, v_max)
    ref = np_c51_project(probs, reward, discount, z)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # the unfixed algorithm really drops mass here, so this case tests something
    buggy = np_c51_project(probs, reward, discount, z, fix_integral=False)
    assert (buggy.sum(axis=1) < 1 - 1e-3).any()
    # terminals: a point mass at clip(r)
    for b in np.flatnonzero(discount == 0.0):
        expected = np.zeros(num_atoms)
        expected[int(np.clip(reward[b], v_min, v_max) - v_min)] = 1.0
        np.testing.assert_allclose(got[b], expected, atol=1e-6)


def test_cross_entropy_and_mean_q():
    rng = np.random.default_rng(10)
    logits = rng.normal(size=(8, 3, 11))
    z = np.linspace(-5, 5, 11)
    soft = np.exp(logits - logits.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    q = np.asarray(distributional.mean_q(jnp.asarray(logits, jnp.float32), jnp.asarray(z, jnp.float32)))
    np.testing.assert_allclose(q, (soft * z).sum(-1), rtol=1e-5, atol=1e-5)
    target = _random_probs(rng, 8, 11)
    ce = np.asarray(
        distributional.cross_entropy(jnp.asarray(target, jnp.float32), jnp.asarray(logits[:, 0], jnp.float32))
    )
    np.testing.assert_allclose(ce, -(target * np.log(soft[:, 0])).sum(-1), rtol=1e-5)


# ----------------------------------------------------------------------------- n-step
def _windows(rng, n, rows):
    """Random windows plus, for every offset and end kind, a row that ends exactly there."""
    rewards = rng.normal(size=(rows, n))
    terminated = rng.random((rows, n)) < 0.15
    truncated = rng.random((rows, n)) < 0.15
    extra_r, extra_te, extra_tr = [], [], []
    for offset in range(n):
        for kind in ("term", "trunc", "both"):
            te = np.zeros(n, bool)
            tr = np.zeros(n, bool)
            te[offset] = kind in ("term", "both")
            tr[offset] = kind in ("trunc", "both")
            # flags after the end must be ignored
            te[offset + 1 :] = rng.random(n - offset - 1) < 0.5
            tr[offset + 1 :] = rng.random(n - offset - 1) < 0.5
            extra_r.append(rng.normal(size=n))
            extra_te.append(te)
            extra_tr.append(tr)
    extra_r.append(rng.normal(size=n))  # no end at all
    extra_te.append(np.zeros(n, bool))
    extra_tr.append(np.zeros(n, bool))
    return (
        np.concatenate([rewards, np.array(extra_r)]),
        np.concatenate([terminated, np.array(extra_te)]),
        np.concatenate([truncated, np.array(extra_tr)]),
    )


@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_matches_reference(n):
    rng = np.random.default_rng(n)
    rewards, terminated, truncated = _windows(rng, n, 200)
    fn = jax.jit(nstep.nstep_return, static_argnums=4)  # gamma traced
    for gamma in (0.0, 0.5, 0.9, 0.99, 1.0):
        ret, disc, last = fn(
            jnp.asarray(rewards, jnp.float32), jnp.asarray(terminated), jnp.asarray(truncated), jnp.float32(gamma), n
        )
        r_ref, d_ref, l_ref = np_nstep(rewards, terminated, truncated, gamma, n)
        np.testing.assert_allclose(np.asarray(ret), r_ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(disc), d_ref, rtol=1e-6, atol=1e-7)
        assert np.asarray(last).dtype == np.int32
        np.testing.assert_array_equal(np.asarray(last), l_ref)


def test_nstep_discount_is_gamma_to_the_k():
    gamma, n = 0.9, 5
    f = np.zeros((4, n), bool)
    te, tr = f.copy(), f.copy()
    tr[0, 1] = True  # truncated at step 1: k = 2, bootstrap with gamma^2
    te[1, 2] = True  # terminated at step 2: k = 3, no bootstrap
    tr[2, 0] = True  # truncated at step 0: k = 1, gamma^1
    # row 3: no end, k = n
    rewards = np.ones((4, n), np.float32)
    ret, disc, last = nstep.nstep_return(jnp.asarray(rewards), jnp.asarray(te), jnp.asarray(tr), gamma, n)
    np.testing.assert_allclose(np.asarray(disc), [gamma**2, 0.0, gamma, gamma**5], rtol=1e-6)
    assert float(disc[0]) != pytest.approx(gamma**n) and float(disc[0]) != pytest.approx(gamma)
    np.testing.assert_array_equal(np.asarray(last), [1, 2, 0, 4])
    np.testing.assert_allclose(
        np.asarray(ret), [1 + gamma, 1 + gamma + gamma**2, 1.0, sum(gamma**i for i in range(n))], rtol=1e-6
    )
