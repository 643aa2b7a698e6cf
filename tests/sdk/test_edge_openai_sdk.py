"""The official `openai` Python SDK against the edge.

Started by tests/e2e/sdk.test.mjs, which brings up the edge (in workerd or
the Spin host), the local upstream and three real runners (two on the small
test model, one on SmolLM2-135M-Instruct and all-MiniLM-L6-v2), creates a
key, and passes INFERGATE_BASE_URL and INFERGATE_KEY. Light prompts are
served by the upstream double, heavy ones by a runner;
`x-infergate-upstream` says which.
"""

from __future__ import annotations

import os
import unittest

import openai

BASE = os.environ.get("INFERGATE_BASE_URL", "http://127.0.0.1:8787") + "/v1"
KEY = os.environ.get("INFERGATE_KEY", "")
MESSAGES = [{"role": "user", "content": "Once upon a time"}]
CHAT = "local/smollm2-135m-instruct"
EMBED = "local/all-minilm-l6-v2"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


class EdgeSdkTest(unittest.TestCase):
    def setUp(self) -> None:
        self.client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=120)

    def test_real_model_answers_through_the_edge(self) -> None:
        raw = self.client.chat.completions.with_raw_response.create(
            model=CHAT, messages=FRANCE, max_tokens=24, temperature=0)
        self.assertEqual(raw.headers["x-infergate-upstream"], "runner-real")
        resp = raw.parse()
        self.assertIn("Paris", resp.choices[0].message.content)
        self.assertEqual(resp.choices[0].finish_reason, "stop")
        chunks = list(self.client.chat.completions.create(
            model=CHAT, messages=FRANCE, max_tokens=24, temperature=0, stream=True,
            stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(text, resp.choices[0].message.content)
        self.assertEqual(chunks[-1].usage.completion_tokens, resp.usage.completion_tokens)

    def test_hello_who_are_you_through_the_edge(self) -> None:
        resp = self.client.chat.completions.create(
            model=CHAT, messages=[{"role": "user", "content": "Hello, who are you?"}], max_tokens=40, temperature=0)
        text = resp.choices[0].message.content
        print(f"\n  SmolLM2 via the edge: {text!r}")
        self.assertGreaterEqual(len(text.split()), 10)
        self.assertNotIn("<|im_", text)

    def test_embeddings_through_the_edge(self) -> None:
        texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
        # The SDK asks for base64 by default and decodes it.
        b64 = self.client.embeddings.create(model=EMBED, input=texts)
        floats = self.client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
        for a, b in zip(b64.data, floats.data):
            self.assertEqual(len(a.embedding), 384)
            self.assertEqual(a.embedding, b.embedding)
        v = [d.embedding for d in floats.data]
        dot = lambda x, y: sum(p * q for p, q in zip(x, y))  # noqa: E731
        self.assertAlmostEqual(dot(v[0], v[0]), 1.0, places=4)
        self.assertGreater(dot(v[0], v[1]), dot(v[0], v[2]))
        self.assertGreater(floats.usage.prompt_tokens, 0)

    def test_heavy_routing_of_one_model_id(self) -> None:
        light = self.client.chat.completions.with_raw_response.create(
            model="smollm2", messages=FRANCE, max_tokens=16)
        self.assertEqual(light.headers["x-infergate-upstream"], "local")
        heavy = self.client.chat.completions.with_raw_response.create(
            model="smollm2", messages=FRANCE, max_tokens=1200, temperature=0)
        self.assertEqual(heavy.headers["x-infergate-upstream"], "runner-real")
        self.assertIn("Paris", heavy.parse().choices[0].message.content)

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
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=240, stream=True, temperature=0,
            stream_options={"include_usage": True})
        self.assertRegex(raw.headers["x-infergate-upstream"], r"^runner-")
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertGreater(len(text), 0)
        self.assertNotIn("tok0 tok1", text)
        # Greedy, so the length is the model's own, every run: sampling could
        # draw an end-of-turn token early.
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finish, ["length"])
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
