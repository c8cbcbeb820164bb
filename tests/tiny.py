"""A CartPole run small enough for the tests (3 chunks of 1000 env steps, a few seconds), as
command-line options; test modules import it from here (pytest puts tests/ on sys.path)."""

TINY = [
    "--total-steps", "3000", "--num-envs", "4", "--learning-starts", "500", "--batch-size", "32",
    "--buffer-size", "1000", "--eval-every", "1000", "--num-chunks", "3", "--widths", "16",
    "--num-eval-envs", "2", "--no-progress",
]  # fmt: skip

# The same on gymnasium's CartPole-v1, stepped on the host by the actor-learner (2 actors).
HOST_TINY = ["--env-id", "gymnasium:CartPole-v1", "--actors", "2", *TINY]
