"""experiments/loop_structure.py reads a compiled loop's body correctly (it feeds the GPU
suite's kernel counts, which nobody can check by hand on the rare GPU machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import loop_structure  # noqa: E402


def compiled_loop(num_conds: int):
    def body(c, i):
        for k in range(num_conds):  # each branch: a sin (one op at least), else unchanged
            c = jax.lax.cond((i + k) % 3 == 0, jnp.sin, lambda x: x, c)
        return c * 1.5 + 1.0, None

    return jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(50))[0]).lower(jnp.ones(4)).compile()


def test_counts_the_conditionals_of_the_main_loop_and_their_branches():
    for n in (0, 1, 3):
        report = loop_structure.loop_structure(compiled_loop(n))
        assert report["conditionals"] == n and report["body_by_opcode"].get("conditional", 0) == n
        assert all(len(b) == 2 and b[0] >= 1 for b in report["branch_ops"])
        assert report["body_ops"] >= n + 1


def test_opcode_of_hlo_lines():
    assert loop_structure.opcode("  %add.1 = f32[4]{0} add(f32[4]{0} %a, f32[4]{0} %b)") == "add"
    assert loop_structure.opcode("  %w = (s32[], f32[4]{0}) while((s32[], f32[4]{0}) %t), condition=%c, body=%b") == "while"
    assert loop_structure.opcode("HloModule jit_f") is None


def test_the_training_loop_has_an_update_branch_and_an_eval_branch():
    report = loop_structure.ours()
    assert report["conditionals"] == 2 and report["body_ops"] > 10
    assert sorted(max(b) > 10 for b in report["branch_ops"]) == [True, True]  # update, evaluation
