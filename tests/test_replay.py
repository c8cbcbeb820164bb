"""The device replay ring buffer, under jit: wraparound, filled-only uniform sampling, dtypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.algorithm import replay

NUM_ENVS, ROWS, OBS_DIM = 3, 8, 2


def make_row(i, num_envs=NUM_ENVS, obs_dtype=jnp.float32):
    """Row i of a test stream: every leaf encodes (i, env), rewards are distinct and positive."""
    ids = i * num_envs + jnp.arange(num_envs)
    return replay.Transition(
        obs=jnp.stack([ids, -ids], axis=-1).astype(obs_dtype),
        action=(ids % 5).astype(jnp.int32),
        reward=(ids + 1).astype(jnp.float32),
        next_obs=jnp.stack([ids + 0.5, ids], axis=-1).astype(obs_dtype),
        terminated=(ids % 3 == 0),
        truncated=(ids % 4 == 1),
    )


def np_row(i, num_envs=NUM_ENVS):
    return {k: np.asarray(v) for k, v in make_row(i, num_envs)._asdict().items()}


@jax.jit
def write_rows(state, start, count_arr):
    """Add rows start, start+1, ... (count given by the static length of count_arr)."""

    def body(s, i):
        return replay.add(s, make_row(i)), None

    return jax.lax.scan(body, state, start + jnp.arange(count_arr.shape[0]))[0]


def empty(rows=ROWS, obs_dtype=jnp.float32):
    return jax.jit(replay.init, static_argnums=1)(make_row(0, obs_dtype=obs_dtype), rows)


def test_init_shapes_dtypes_and_counters():
    """init gives zeroed [rows, num_envs, ...] leaves in the example's dtypes and zero counters."""
    state = empty()
    example = make_row(0)
    for buf, x in zip(state.data, example):
        assert buf.shape == (ROWS, *x.shape) and buf.dtype == x.dtype
        assert not np.asarray(buf).any()
    assert int(state.row) == 0 and int(state.filled) == 0
    assert state.row.dtype == jnp.int32 and state.filled.dtype == jnp.int32


def test_add_before_wrap_writes_rows_in_order():
    """k < rows adds fill rows 0..k-1 in order; row == filled == k; the rest stays zero."""
    k = 5
    state = write_rows(empty(), 0, jnp.zeros(k))
    assert int(state.row) == k and int(state.filled) == k
    data = {f: np.asarray(v) for f, v in state.data._asdict().items()}
    for i in range(k):
        for f, v in np_row(i).items():
            np.testing.assert_array_equal(data[f][i], v)
    for f in data:
        assert not data[f][k:].any()


def test_wraparound_keeps_the_last_rows_at_i_mod_rows():
    """After N > rows adds the buffer holds exactly rows N-rows..N-1, row i at position i % rows."""
    state = empty()
    written = 0
    for chunk in (5, 6, 10, 1):  # wraps more than once, in uneven pieces
        state = write_rows(state, written, jnp.zeros(chunk))
        written += chunk
        assert int(state.row) == written % ROWS
        assert int(state.filled) == min(written, ROWS)
    data = {f: np.asarray(v) for f, v in state.data._asdict().items()}
    for i in range(written - ROWS, written):
        for f, v in np_row(i).items():
            np.testing.assert_array_equal(data[f][i % ROWS], v)


def test_sample_equals_gather_at_sampled_indices():
    """sample() returns exactly data[row, env] at the indices sample_indices() draws."""
    state = write_rows(empty(), 0, jnp.zeros(11))
    key = jax.random.key(0)
    batch = jax.jit(replay.sample, static_argnums=2)(state, key, 64)
    rows, envs = jax.jit(replay.sample_indices, static_argnums=2)(state, key, 64)
    rows, envs = np.asarray(rows), np.asarray(envs)
    for f, buf in state.data._asdict().items():
        np.testing.assert_array_equal(np.asarray(getattr(batch, f)), np.asarray(buf)[rows, envs])


def chi_square(counts, expected):
    return float(((counts - expected) ** 2 / expected).sum())


def test_sampling_only_returns_filled_slots_and_covers_them_uniformly():
    """With k < rows rows written, samples never hit an unwritten slot and hit each slot ~uniformly."""
    k, n = 5, 60_000
    state = write_rows(empty(), 0, jnp.zeros(k))
    batch = jax.jit(replay.sample, static_argnums=2)(state, jax.random.key(1), n)
    reward = np.asarray(batch.reward)
    assert np.all(reward > 0)  # unwritten slots hold reward 0
    slot = reward.astype(np.int64) - 1  # reward = row * num_envs + env + 1
    assert slot.max() < k * NUM_ENVS
    counts = np.bincount(slot, minlength=k * NUM_ENVS)
    expected = n / (k * NUM_ENVS)
    assert counts.min() > 0.9 * expected and counts.max() < 1.1 * expected
    # 14 degrees of freedom: P(chi2 > 50) < 1e-5.
    assert chi_square(counts, expected) < 50.0


def test_sampling_after_wrap_covers_the_whole_buffer():
    """Once full (after wrapping), every (row, env) slot is sampled, uniformly."""
    n = 50_000
    state = write_rows(empty(), 0, jnp.zeros(ROWS + 3))
    assert int(state.filled) == ROWS
    rows, envs = jax.jit(replay.sample_indices, static_argnums=2)(state, jax.random.key(2), n)
    flat = np.asarray(rows) * NUM_ENVS + np.asarray(envs)
    counts = np.bincount(flat, minlength=ROWS * NUM_ENVS)
    assert counts.shape == (ROWS * NUM_ENVS,)
    expected = n / (ROWS * NUM_ENVS)
    assert counts.min() > 0.85 * expected and counts.max() < 1.15 * expected
    # 23 degrees of freedom: P(chi2 > 65) < 1e-5.
    assert chi_square(counts, expected) < 65.0


def test_uint8_observations_stay_uint8_and_round_trip():
    """uint8 obs buffers stay uint8 (no upcast) and float32 0/1 planes written into them round-trip."""
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 2, size=(ROWS + 2, NUM_ENVS, 4, 4, 3)).astype(np.float32)
    example = replay.Transition(
        obs=jnp.zeros((NUM_ENVS, 4, 4, 3), jnp.uint8),
        action=jnp.zeros(NUM_ENVS, jnp.int32),
        reward=jnp.zeros(NUM_ENVS, jnp.float32),
        next_obs=jnp.zeros((NUM_ENVS, 4, 4, 3), jnp.uint8),
        terminated=jnp.zeros(NUM_ENVS, bool),
        truncated=jnp.zeros(NUM_ENVS, bool),
    )

    @jax.jit
    def fill(planes):
        def body(s, p):
            row = example._replace(obs=p, next_obs=1.0 - p)  # float32 leaves into uint8 buffers
            return replay.add(s, row), None

        return jax.lax.scan(body, replay.init(example, ROWS), planes)[0]

    state = fill(jnp.asarray(planes))
    assert state.data.obs.dtype == jnp.uint8 and state.data.next_obs.dtype == jnp.uint8
    obs, next_obs = np.asarray(state.data.obs), np.asarray(state.data.next_obs)
    for i in range(2, ROWS + 2):  # the last ROWS rows survive
        np.testing.assert_array_equal(obs[i % ROWS], planes[i].astype(np.uint8))
        np.testing.assert_array_equal(next_obs[i % ROWS].astype(np.float32), 1.0 - planes[i])
    batch = jax.jit(replay.sample, static_argnums=2)(state, jax.random.key(0), 16)
    assert batch.obs.dtype == jnp.uint8
    assert set(np.unique(np.asarray(batch.obs))) <= {0, 1}


def test_float_observations_stay_float32():
    """float32 obs buffers stay float32 and keep non-integer values exactly."""
    state = write_rows(empty(), 0, jnp.zeros(3))
    assert state.data.obs.dtype == jnp.float32 and state.data.next_obs.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(state.data.next_obs[2]), np_row(2)["next_obs"])
    assert np.asarray(state.data.next_obs[2])[0, 0] == 6.5
