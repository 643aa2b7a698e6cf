# infergate: the two commands are `make dev` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Install toolchains, pinned tools, JS deps, ONNX Runtime, the test model (cached outside the clone)
	@scripts/setup.sh
	@scripts/setup-runner.sh

build: setup ## Build the Workers bundle into build/
	@scripts/build-worker.sh

dev: build runner ## Run the local stack: edge on :8787 (PORT) in front of a local runner (:8090) and the local upstream (:9100)
	@source scripts/runner-env.sh && node scripts/dev.mjs

build-spin: setup ## Build the Spin component (target/wasm32-wasip2/release) and its wasmtime test host
	@scripts/build-spin.sh
	@scripts/spin-host.sh >/dev/null

dev-spin: build-spin runner ## Run the local stack with the Spin build in the test host on :3000 (SPIN_PORT)
	@source scripts/runner-env.sh && node scripts/dev.mjs --target spin

runner: setup ## Build the native runner (release)
	cargo build --release -p infergate-runner

setup-llama: setup ## llama.cpp's Python binding in its own cached venv: the oracle's reference and the benchmark's peer (compiles llama.cpp once)
	@scripts/setup-llama.sh

test: build build-spin lint setup-llama ## Run every test: core, runner, and end to end in workerd and in the Spin host
	source scripts/runner-env.sh && cargo test --workspace
	@scripts/spin-host.sh test
	cargo build -p infergate-cli -p infergate-runner
	source scripts/runner-env.sh && "$$INFERGATE_PYTHON" -m unittest tests/sdk/test_runner_openai_sdk.py
	source scripts/runner-env.sh && "$$INFERGATE_PYTHON" -m unittest tests/sdk/test_runner_real_models.py
	source scripts/runner-env.sh && "$$INFERGATE_PYTHON" -m unittest discover -s tests/oracle -v
	node --test tests/upstream/server.test.mjs
	source scripts/runner-env.sh && INFERGATE_TARGET=workers node --test --test-concurrency=1 tests/e2e/
	@scripts/schemathesis.sh
	source scripts/runner-env.sh && INFERGATE_TARGET=spin node --test --test-concurrency=1 tests/e2e/

lint: setup ## rustfmt and clippy (-D warnings) on every target we build
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p infergate --all-targets --features openapi -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --lib --target wasm32-wasip2 --features spin -- -D warnings
	@scripts/spin-host.sh lint
	cargo fmt --manifest-path bench/passthrough-spin/Cargo.toml -- --check
	CARGO_TARGET_DIR=target cargo clippy --manifest-path bench/passthrough-spin/Cargo.toml --target wasm32-wasip2 --locked -- -D warnings

bench-runner: setup setup-llama ## Runner vs llama.cpp vs FastAPI+onnxruntime on SmolLM2: tokens/s, TTFT, memory per stream at 1/4/16 streams
	bench/runner/run.sh

bench-ratelimit: build build-spin ## Rate limits per target and backend (none, kv, strict): overshoot, store ops and added latency, 50 clients on one key over 4 isolates
	node bench/ratelimit.mjs

profile-worker: build ## V8 CPU profile of workerd under the small chat load: self time by category and function, per request
	node bench/profile-worker.mjs

openapi: ## Regenerate the committed OpenAPI documents (src/gateway/routes/openapi/*.json) from the wire types
	INFERGATE_UPDATE_OPENAPI=1 cargo test -p infergate --lib gateway::routes::openapi::tests::committed_documents_are_fresh

schemathesis: build ## Schemathesis against /openapi.json on the built worker in workerd (SCHEMATHESIS_MAX_EXAMPLES)
	@scripts/schemathesis.sh

fuzz: ## cargo-fuzz every core target for FUZZ_SECONDS (default 60) each; prints executions per target
	@scripts/fuzz.sh

bench: build build-spin ## Edge benchmarks vs pass-through baselines (Workers and Spin): latency, stream relay, sizes, cache, memory
	@scripts/build-spin-passthrough.sh
	node bench/edge.mjs

clean: ## Remove build outputs (keeps the tool cache)
	rm -rf build target .wrangler .spin

PHONY_EXTRA := setup-llama
.PHONY: help setup setup-llama build dev test lint clean bench-ratelimit bench-runner build-spin dev-spin openapi schemathesis fuzz bench runner profile-worker
