//! Interop with a client library we did not write: slixmpp (PyPI) logs two accounts in over
//! STARTTLS with SCRAM, subscribes both ways, checks presence and exchanges 200 messages each
//! way (conformance/interop/slixmpp_chat.py); and it receives offline messages, carbons on two
//! resources and archive pages (conformance/interop/slixmpp_delivery.py); and it creates,
//! configures and talks in a multi-user chat room (conformance/interop/slixmpp_muc.py). Skipped
//! when slixmpp is not installed, unless STARLING_REQUIRE_SERVICES=1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

fn slixmpp_available() -> bool {
    let ok = Command::new("python3").args(["-c", "import slixmpp"]).status().is_ok_and(|s| s.success());
    if !ok && std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("slixmpp is required (pip install -r conformance/interop/requirements.txt)");
    }
    ok
}

/// Runs an interop script against a fresh server with two accounts; its standard output, or
/// `None` when slixmpp is missing (and not required).
async fn run_script(script: &str, extra_args: &[&str]) -> Option<String> {
    if !slixmpp_available() {
        eprintln!("skipped: slixmpp is not installed");
        return None;
    }
    let server = support::start("", "").await;
    server.add_user("alice@localhost", "wonderland").await;
    server.add_user("bob@localhost", "builder").await;
    let port = server.starttls_port().to_string();
    let script = format!("{}/conformance/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut args =
        vec![script.as_str(), "127.0.0.1", &port, "alice@localhost", "wonderland", "bob@localhost", "builder"];
    args.extend_from_slice(extra_args);
    let output = tokio::process::Command::new("python3").args(&args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "slixmpp run failed:\n{stdout}\n{stderr}");
    Some(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_clients_subscribe_and_exchange_200_messages_each_way() {
    let Some(stdout) = run_script("slixmpp_chat.py", &["200"]).await else { return };
    assert!(stdout.contains("PASS: 200 messages each way"), "{stdout}");
    assert!(stdout.contains("SCRAM-SHA"), "expected a SCRAM login: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_gets_offline_messages_carbons_and_pages_through_the_archive() {
    let Some(stdout) = run_script("slixmpp_delivery.py", &[]).await else { return };
    for part in ["20 offline messages", "carbons", "archive query paged"] {
        assert!(stdout.contains(&format!("PASS: {part}")), "{part} missing:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_creates_configures_and_talks_in_a_room() {
    let Some(stdout) = run_script("slixmpp_muc.py", &[]).await else { return };
    for part in ["room created", "members-only", "six group messages", "subject changed", "A sees B go away"] {
        assert!(stdout.contains(&format!("PASS: {part}")), "{part} missing:\n{stdout}");
    }
}
