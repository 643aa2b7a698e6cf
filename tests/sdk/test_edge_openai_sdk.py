"""The official `openai` Python SDK against the edge.

Started by tests/e2e/sdk.test.mjs, which brings up the edge (in workerd or
the Spin host), the local upstream and two real runners, creates a key, and
passes INFERGATE_BASE_URL and INFERGATE_KEY. Light prompts are served by the
upstream double, heavy ones by a runner; `x-infergate-upstream` says which.
"""

from __future__ import annotations

import os
import unittest

import openai

BASE = os.environ.get("INFERGATE_BASE_URL", "http://127.0.0.1:8787") + "/v1"
KEY = os.environ.get("INFERGATE_KEY", "")
MESSAGES = [{"role": "user", "content": "Once upon a time"}]


class EdgeSdkTest(unittest.TestCase):
    def setUp(self) -> None:
        self.client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0)

    def test_light_prompt_from_the_upstream(self) -> None:
        raw = self.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=16)
        self.assertEqual(raw.headers["x-infergate-upstream"], "local")
        resp = raw.parse()
        self.assertTrue(resp.choices[0].message.content.startswith("tok0"))
        self.assertGreater(resp.usage.total_tokens, 0)

    def test_light_prompt_streams(self) -> None:
        chunks = list(self.client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=16, stream=True,
            stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertTrue(text.startswith("tok0"))
        self.assertIsNotNone(chunks[-1].usage)

    def test_heavy_prompt_streams_from_a_runner(self) -> None:
        raw = self.client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=240, stream=True,
            stream_options={"include_usage": True})
        self.assertRegex(raw.headers["x-infergate-upstream"], r"^runner-")
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertGreater(len(text), 0)
        self.assertNotIn("tok0 tok1", text)
        self.assertEqual(chunks[-1].usage.completion_tokens, 240)

    def test_runner_only_model_completion(self) -> None:
        resp = self.client.completions.create(model="local/tiny-gpt", prompt="Hello", max_tokens=8, temperature=0)
        self.assertEqual(resp.usage.completion_tokens, 8)
        self.assertEqual(resp.choices[0].finish_reason, "length")

    def test_errors_are_the_sdks_own_exceptions(self) -> None:
        bad = openai.OpenAI(base_url=BASE, api_key="wrong-key", max_retries=0)
        with self.assertRaises(openai.AuthenticationError) as ctx:
            bad.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        self.assertEqual(ctx.exception.code, "invalid_api_key")
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "robot", "content": "x"}])
        self.assertEqual(ctx.exception.param, "messages[0].role")
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=3)
        self.assertEqual(ctx.exception.param, "temperature")
        with self.assertRaises(openai.NotFoundError):
            self.client.chat.completions.create(model="no-such-model", messages=MESSAGES)

    def test_mid_stream_failure_raises(self) -> None:
        stream = self.client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=16, stream=True,
            messages=[{"role": "user", "content": 'MOCK{"reset_after": 2}'}])
        with self.assertRaises(openai.APIError):
            for _ in stream:
                pass


if __name__ == "__main__":
    unittest.main()
