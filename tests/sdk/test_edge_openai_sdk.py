"""The official `openai` Python SDK against the edge.

Started by tests/e2e/sdk.test.mjs, which brings up the edge (in workerd or
the Spin host), the local upstream and three real runners (two on the small
test model, one on SmolLM2-135M-Instruct and all-MiniLM-L6-v2), creates a
key, and passes INFERGATE_BASE_URL and INFERGATE_KEY. Light prompts are
served by the upstream double, heavy ones by a runner;
`x-infergate-upstream` says which.
"""

from __future__ import annotations

import json
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


# The same Responses conformance cases for each upstream kind behind the
# edge: the OpenAI-compatible double over chat, the Anthropic double, and the
# OpenAI double serving the Responses API itself (forwarded, not
# translated). The real runner answers `test_create_on_the_real_model` and
# the stream test.
DOUBLES = ("gpt-4o-mini", "claude-test", "gpt-4o-native")


def mock(directive: dict) -> str:
    """A prompt carrying a directive for the upstream double."""
    return "go MOCK" + json.dumps(directive)


class EdgeResponsesSdkTest(unittest.TestCase):
    """`client.responses` (the Responses API) through the edge."""

    def setUp(self) -> None:
        self.client = openai.OpenAI(base_url=BASE, api_key=KEY, max_retries=0, timeout=120)

    def test_create_on_the_real_model(self) -> None:
        resp = self.client.responses.create(
            model=CHAT, input="What is the capital of France?", temperature=0, max_output_tokens=16)
        self.assertEqual(resp.object, "response")
        self.assertEqual(resp.status, "completed")
        self.assertTrue(resp.id.startswith("resp_"))
        self.assertIn("Paris", resp.output_text)
        self.assertGreater(resp.usage.input_tokens, 0)
        self.assertGreater(resp.usage.output_tokens, 0)
        self.assertEqual(resp.usage.total_tokens, resp.usage.input_tokens + resp.usage.output_tokens)

    def test_stream_deltas_add_up_to_the_completed_response(self) -> None:
        deltas, types = [], []
        with self.client.responses.stream(
                model=CHAT, input="What is the capital of France?", instructions="Answer in one sentence.",
                temperature=0, max_output_tokens=16) as stream:
            for event in stream:
                types.append(event.type)
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = stream.get_final_response()
        self.assertEqual(types[:2], ["response.created", "response.in_progress"])
        self.assertIn(types[-1], ("response.completed", "response.incomplete"))
        self.assertEqual("".join(deltas), final.output_text)
        self.assertIn("Paris", final.output_text)

    def test_a_tool_loop(self) -> None:
        tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
        for model in DOUBLES:
            with self.subTest(model=model):
                first = self.client.responses.create(
                    model=model, tools=tools, max_output_tokens=64,
                    input=mock({"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}))
                calls = [o for o in first.output if o.type == "function_call"]
                self.assertEqual(len(calls), 1, first.output)
                self.assertEqual(calls[0].name, "get_weather")
                self.assertEqual(json.loads(calls[0].arguments), {"city": "Paris"})
                # The call and its output go back as input items; the answer is text.
                second = self.client.responses.create(
                    model=model, tools=tools, max_output_tokens=16,
                    input=[{"role": "user", "content": "weather?"}, calls[0],
                           {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}])
                self.assertEqual(second.status, "completed")
                self.assertTrue(second.output_text.startswith("tok0"), second.output_text)

    def test_create_and_stream_on_each_upstream_kind(self) -> None:
        for model in DOUBLES:
            with self.subTest(model=model):
                resp = self.client.responses.create(model=model, input="Hello", max_output_tokens=16)
                self.assertEqual(resp.status, "completed")
                self.assertTrue(resp.output_text.startswith("tok0"), resp.output_text)
                self.assertGreater(resp.usage.output_tokens, 0)
                with self.client.responses.stream(model=model, input="Hello", max_output_tokens=16) as stream:
                    deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
                    final = stream.get_final_response()
                self.assertEqual("".join(deltas), final.output_text)
                self.assertEqual(final.usage.output_tokens, resp.usage.output_tokens)

    def test_json_schema_text_format(self) -> None:
        # Each upstream constrains its output to the schema it was given:
        # the chat double's `response_format`, Anthropic's
        # `output_config.format`, the Responses double's `text.format`. A
        # translation that drops the schema answers plain text.
        schema = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
                  "required": ["city", "population"], "additionalProperties": False}
        for model in DOUBLES:
            with self.subTest(model=model):
                resp = self.client.responses.create(
                    model=model, input="Name a city.", max_output_tokens=32,
                    text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}})
                self.assertEqual(json.loads(resp.output_text), {"city": "tok0", "population": 0})
                self.assertEqual(resp.text.format.type, "json_schema")
                self.assertGreater(resp.usage.output_tokens, 0)

    def test_json_schema_without_schema_names_the_field(self) -> None:
        with self.assertRaises(openai.BadRequestError) as cm:
            self.client.responses.create(model="gpt-4o-mini", input="x",
                                         text={"format": {"type": "json_schema", "name": "city"}})
        self.assertEqual(cm.exception.param, "text.format.schema")

    def test_stored_responses_retrieve_continue_and_delete(self) -> None:
        for model in DOUBLES:
            with self.subTest(model=model):
                self.stored_round_trip(model)

    def stored_round_trip(self, model: str) -> None:
        tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
        first = self.client.responses.create(
            model=model, tools=tools, max_output_tokens=64,
            input=mock({"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo"}}}))
        call = next(o for o in first.output if o.type == "function_call")
        got = self.client.responses.retrieve(first.id)
        self.assertEqual(got.id, first.id)
        self.assertEqual(got.output[0].call_id, call.call_id)
        items = self.client.responses.input_items.list(first.id)
        self.assertEqual(items.data[0].type, "message")
        # The tool's output continues the stored conversation.
        second = self.client.responses.create(
            model=model, previous_response_id=first.id, tools=tools, max_output_tokens=16,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"},
                   {"role": "user", "content": "and tomorrow?"}])
        self.assertEqual(second.status, "completed")
        self.assertEqual(second.previous_response_id, first.id)
        self.assertTrue(second.output_text.startswith("tok0"))
        self.client.responses.delete(first.id)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(first.id)
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.responses.create(model=model, previous_response_id=first.id, input="again")
        self.assertEqual(e.exception.body["param"], "previous_response_id")

    def test_store_false_stores_nothing(self) -> None:
        resp = self.client.responses.create(model="gpt-4o-mini", input="hi", store=False, max_output_tokens=8)
        self.assertEqual(resp.store, False)
        with self.assertRaises(openai.NotFoundError):
            self.client.responses.retrieve(resp.id)

    def test_unsupported_tools_are_a_400_naming_the_field(self) -> None:
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.responses.create(model="gpt-4o-mini", input="x", tools=[{"type": "web_search"}])
        self.assertEqual(e.exception.body["param"], "tools[0].type")

    def test_built_in_tools_reach_an_upstream_that_serves_them(self) -> None:
        resp = self.client.responses.create(model="gpt-4o-native", input="x", max_output_tokens=8,
                                            tools=[{"type": "web_search"}], tool_choice={"type": "web_search"})
        self.assertEqual(resp.status, "completed")
        self.assertEqual([t.type for t in resp.tools], ["web_search"])
