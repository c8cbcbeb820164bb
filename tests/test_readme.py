"""Every code example in README.md runs, in order, with a reduced budget, so the docs cannot
drift from the code. A command the test does not know how to run fails the test: a new kind of
example needs a handler here."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import purejaxdqn
from purejaxdqn import cli, evaluate

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Appended to every new training run (the last value of an option wins): short runs, same shapes.
BUDGET = ["--total-steps", "2000", "--num-chunks", "1", "--eval-every", "1000", "--learning-starts", "1000",
          "--widths", "16", "--no-progress"]  # fmt: skip
PY_BUDGET = {"total_steps": 2000, "num_chunks": 1, "eval_every": 1000, "learning_starts": 1000, "widths": (16,)}
DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}  # as the README says, for mesh examples
# Setting up the environment the suite itself runs in, and the suite itself: not re-run here.
SKIPPED = (("python3", "-m", "venv"), (".",), ("pip",), ("python", "-m", "pytest"))


def examples(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(bash|python|toml)\n(.*?)```", text, re.S)


def write_file_example(block: str, cwd: Path) -> str:
    """A TOML example is a file the commands after it use: its first line names it
    (`# my-acrobot.toml`), and it is written there."""
    name = block.splitlines()[0].removeprefix("#").strip()
    assert name.endswith(".toml") and "/" not in name, f"a TOML example names its file on its first line: {block[:80]!r}"
    (cwd / name).write_text(block)
    return "file"


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a bash block: continuations joined, comments dropped, split at &&."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            commands.append(tokens[:cut])
            tokens = tokens[cut + 1 :]
    return commands


DRIVER = "import sys, json; from purejaxdqn import cli; sys.exit(max(cli.main(a) for a in json.loads(sys.argv[1])))"


def run_with_devices(commands: list[list[str]], env: dict, cwd: Path) -> None:
    """Mesh examples need several devices: one fresh interpreter with forced CPU devices runs
    them all (one interpreter start instead of one per command)."""
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(commands)], cwd=cwd, env={**os.environ, **DEVICES, **env},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"{commands}\n{proc.stderr[-3000:]}"


def run_block(block: str, cwd: Path) -> list[str]:
    """Run the commands of one bash block with a reduced budget; returns what was done with each."""
    done, device_runs = [], {}
    for tokens in shell_commands(block):
        env = {}
        while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
            key, value = tokens.pop(0).split("=", 1)
            env[key] = value
        kind, args = run_command(tokens, cwd, defer_devices=True, env=env)
        if kind == "devices":
            device_runs.setdefault(json.dumps(env), []).append(args)
        done.append(kind)
    for env, commands in device_runs.items():
        run_with_devices(commands, json.loads(env), cwd)
    return done


def run_command(tokens: list[str], cwd: Path, defer_devices: bool = False, env: dict | None = None):
    """Run one README command with a reduced budget; returns (what was done, its arguments)."""
    if any(tuple(tokens[: len(s)]) == s for s in SKIPPED):
        return "skipped", None
    if tokens[:3] == ["python", "-m", "purejaxdqn.train"]:
        args = tokens[3:] if "--resume" in tokens else [*tokens[3:], *BUDGET]
        if "--process-id" in args:
            # Two processes are run by tests/test_parallel.py (the same command shape); here the
            # example's options are checked, so a renamed or removed option fails this test.
            cli.make_plan(args)
            return "multi-host (options checked)", args
        if env or any(a.startswith("--mesh") for a in args):
            return "devices", args
        assert cli.main(args) == 0, shlex.join(tokens)
        return "train", args
    if tokens[:3] == ["python", "-m", "purejaxdqn.evaluate"]:
        assert evaluate.main(tokens[3:]) == 0, shlex.join(tokens)
        return "evaluate", tokens[3:]
    if tokens[:2] == ["python", "experiments/sweep_static.py"]:
        spec = importlib.util.spec_from_file_location("sweep_static", ROOT / "experiments" / "sweep_static.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.main([*tokens[2:], *BUDGET]) == 0, shlex.join(tokens)
        return "sweep_static", tokens[2:]
    raise AssertionError(f"README example not covered by tests/test_readme.py: {shlex.join(tokens)}")


@pytest.mark.slow
def test_every_readme_example_runs(tmp_path, monkeypatch):
    """Each bash command and Python block of README.md, in README order, in one directory."""
    monkeypatch.chdir(tmp_path)
    real_from_preset = purejaxdqn.from_preset
    monkeypatch.setattr(purejaxdqn, "from_preset", lambda spec=None, **kw: real_from_preset(spec, **{**PY_BUDGET, **kw}))
    namespace: dict = {}
    done = []
    for number, (language, code) in enumerate(examples(README.read_text()), 1):
        if language == "python":
            exec(compile(code, f"README.md example {number}", "exec"), namespace)
            done.append("python")
        elif language == "toml":
            done.append(write_file_example(code, tmp_path))
        else:
            done += run_block(code, tmp_path)
    assert done.count("python") >= 3 and done.count("devices") >= 3 and "evaluate" in done and "sweep_static" in done and "file" in done
    assert list((tmp_path / "runs" / "tracked" / "tensorboard").iterdir()) and (tmp_path / "seed7.gif").stat().st_size
    assert isinstance(namespace["action"], int)


def test_readme_install_commands():
    """Training installs without the [dev] extra; the CI's test command keeps it."""
    blocks = [code for language, code in examples(README.read_text()) if language == "bash"]
    assert "pip install -e . && python -m purejaxdqn.train" in blocks[0]
    ci = README.read_text().split("<!-- ci: test command -->", 1)[1]
    assert 'pip install -e ".[dev]" && python -m pytest -q' in examples(ci)[0][1]


def test_readme_parsing_sees_every_example():
    """The parser finds the blocks, their continuations and their && chains."""
    found = examples("x\n```bash\na b \\\n  c   # note\nd && e f\n```\n```python\nprint(1)\n```\n")
    assert found[1] == ("python", "print(1)\n")
    assert shell_commands(found[0][1]) == [["a", "b", "c"], ["d"], ["e", "f"]]
    assert run_command(["pip", "install", "-e", "."], Path("."))[0] == "skipped"
    with pytest.raises(AssertionError, match="not covered"):
        run_command(["python", "-m", "purejaxdqn.unknown"], Path("."))


def test_the_contents_list_is_the_readme_sections():
    """The list at the top names every `## ` section, in order, with GitHub's anchors."""
    text = README.read_text()
    heads = re.findall(r"^## (.+)$", text, re.M)
    anchor = lambda h: re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")  # noqa: E731
    listed = text.split("Contents:\n\n", 1)[1].split("\n\n", 1)[0]
    assert listed == "\n".join(f"- [{h}](#{anchor(h)})" for h in heads)
    assert heads[0] == "Two commands for a fresh machine"
