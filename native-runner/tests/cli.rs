//! The `infergate-runner` binary: start-up checks and SIGTERM draining.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;

fn runner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_infergate-runner"));
    c.env_remove("INFERGATE_RUNNER_SECRET")
        .env("ORT_DYLIB_PATH", common::ort_lib())
        .env("INFERGATE_MODEL_DIR", common::model_dir())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    c
}

#[test]
fn help_describes_the_flags() {
    let out = runner().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model-dir",
        "--ort-lib",
        "--device",
        "--require-gpu",
        "--intra-threads",
        "--max-batch-size",
        "--max-batch-tokens",
        "--max-queue",
        "--signing-secret",
        "--insecure-dev",
        "INFERGATE_RUNNER_SECRET",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    assert!(!help.contains("step-delay"), "test-only flags stay hidden");
}

#[test]
fn refuses_to_start_without_a_secret_or_a_library() {
    let out = runner().args(["--port", "0"]).output().unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("INFERGATE_RUNNER_SECRET") && log.contains("--insecure-dev"),
        "{log}"
    );

    let out = runner()
        .args(["--port", "0", "--ort-lib", "/nonexistent/libonnxruntime.so"])
        .env("INFERGATE_RUNNER_SECRET", "a-secret-that-must-not-be-logged")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("/nonexistent/libonnxruntime.so") && log.contains("make setup"),
        "{log}"
    );
    assert!(!log.contains("a-secret-that-must-not-be-logged"));
}

/// A started runner and its log lines so far.
struct Started {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
    base: String,
}

fn start_until_ready(args: &[&str]) -> Started {
    let mut child = runner()
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let mut base = None;
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            base = rest.split_whitespace().next().map(str::to_string);
        }
        let ready = line.contains("ready: device");
        log.push(line);
        if ready {
            break;
        }
    }
    let base = base.unwrap_or_else(|| panic!("no address in the log:\n{}", log.join("\n")));
    Started {
        child,
        lines,
        log,
        base,
    }
}

#[test]
fn cuda_falls_back_loudly_or_refuses_with_require_gpu() {
    // This machine's library is the CPU build: CUDA cannot work here.
    let out = runner()
        .args(["--port", "0", "--insecure-dev", "--device", "cuda", "--require-gpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("--require-gpu") && log.contains("CUDA"), "{log}");

    let mut s = start_until_ready(&["--insecure-dev", "--device", "cuda"]);
    let log = s.log.join("\n");
    assert!(
        log.contains("FALLING BACK TO CPU") && log.contains("ready: device cpu"),
        "{log}"
    );
    let _ = s.child.kill();
    let _ = s.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_streams_then_exits() {
    let Started {
        mut child,
        lines,
        mut log,
        base,
    } = start_until_ready(&["--insecure-dev", "--step-delay-ms", "10"]);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/completions"))
        .json(&serde_json::json!({"model": "local/tiny-gpt", "prompt": "Hello", "max_tokens": 40, "temperature": 0, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut body = String::from_utf8_lossy(&stream.next().await.unwrap().unwrap()).into_owned();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(
        body.ends_with("data: [DONE]\n\n"),
        "the stream in flight completes: {body}"
    );
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(
        log.contains("SIGTERM received") && log.contains("all requests drained"),
        "{log}"
    );
}
