"""The official `openai` Python SDK against the native runner, directly.

Run with the venv python from scripts/setup-runner.sh:

    source scripts/runner-env.sh
    "$INFERGATE_PYTHON" -m unittest tests/sdk/test_runner_openai_sdk.py -v

The test builds the runner (`cargo build -p infergate-runner`, a no-op when
up to date) unless INFERGATE_RUNNER_BIN names a binary, starts it with
--insecure-dev on a free port and stops it with SIGTERM afterwards.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import unittest
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[2]
MODEL = "local/tiny-gpt"
# Greedy continuation of this prompt (16 tokens), as computed by
# onnxruntime-python in tools/gen_test_model.py.
PROMPT = "Once upon a time there was"
GOLDEN = "](atZ fanendouldtokenn\\ prine<E not"
SETUP_HINT = "run `make setup` (scripts/setup-runner.sh), then `source scripts/runner-env.sh`"


def runner_binary() -> str:
    explicit = os.environ.get("INFERGATE_RUNNER_BIN")
    if explicit:
        return explicit
    subprocess.run(["cargo", "build", "--quiet", "-p", "infergate-runner"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "debug" / "infergate-runner")


class RunnerProcess:
    """The runner on 127.0.0.1:<free port>, ready when start() returns."""

    def __init__(self, args: tuple[str, ...] = (), required: tuple[str, ...] = ("INFERGATE_MODEL_DIR",)) -> None:
        for var in ("ORT_DYLIB_PATH", *required):
            if not os.environ.get(var):
                raise RuntimeError(f"{var} is not set: {SETUP_HINT}")
        env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        env.pop("INFERGATE_RUNNER_SECRET", None)
        self.proc = subprocess.Popen(
            [runner_binary(), "--insecure-dev", "--port", "0", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.base_url = self._wait_ready()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def _wait_ready(self) -> str:
        base, seen = None, []
        while True:
            try:
                line = self.lines.get(timeout=180)
            except queue.Empty:
                raise RuntimeError("the runner did not become ready:\n" + "".join(seen))
            seen.append(line)
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                base = m.group(1)
            if "ready: device" in line and base:
                return base + "/v1"
            if self.proc.poll() is not None:
                raise RuntimeError("the runner exited:\n" + "".join(seen))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


class RunnerWithOpenAiSdk(unittest.TestCase):
    runner: RunnerProcess
    client: openai.OpenAI

    @classmethod
    def setUpClass(cls) -> None:
        cls.runner = RunnerProcess()
        cls.client = openai.OpenAI(base_url=cls.runner.base_url, api_key="unused", max_retries=0)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.runner.stop()
        assert cls.runner.proc.returncode == 0, cls.runner.proc.returncode

    def test_models(self) -> None:
        ids = [m.id for m in self.client.models.list()]
        self.assertEqual(ids, [MODEL])

    def test_completion_streaming(self) -> None:
        stream = self.client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stream=True)
        text, finish = "", None
        pieces = 0
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.text
                pieces += 1
                finish = choice.finish_reason or finish
        self.assertEqual(text, GOLDEN)
        self.assertEqual(finish, "length")
        self.assertGreater(pieces, 2)

    def test_completion(self) -> None:
        r = self.client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0)
        self.assertEqual(r.choices[0].text, GOLDEN)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual((r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens), (11, 16, 27))

    def test_chat_streaming_with_usage(self) -> None:
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        stream = self.client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
        content, finish, usage, role = "", None, None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                role = choice.delta.role or role
                content += choice.delta.content or ""
                finish = choice.finish_reason or finish
        self.assertEqual(role, "assistant")
        self.assertEqual(finish, "length")
        self.assertIsNotNone(usage)
        self.assertEqual(usage.completion_tokens, 12)
        r = self.client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0)
        self.assertEqual(r.choices[0].message.content, content)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertEqual(r.usage.prompt_tokens, usage.prompt_tokens)

    def test_stop_string(self) -> None:
        r = self.client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stop=["fan"])
        self.assertEqual(r.choices[0].text, "](atZ ")
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_seeded_sampling_is_reproducible(self) -> None:
        kw = dict(model=MODEL, prompt="Hello", max_tokens=24, temperature=1.0, seed=1234)
        a = self.client.completions.create(**kw).choices[0].text
        b = self.client.completions.create(**kw).choices[0].text
        self.assertEqual(a, b)

    def test_bad_request_raises(self) -> None:
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.completions.create(model=MODEL, prompt=PROMPT, temperature=5)
        self.assertEqual(ctx.exception.param, "temperature")
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.chat.completions.create(model=MODEL, messages=[], max_tokens=4)
        self.assertEqual(ctx.exception.param, "messages")
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="no-such-model", prompt=PROMPT)


if __name__ == "__main__":
    unittest.main()
