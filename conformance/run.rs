//! The conformance runner: every `conformance/scripts/**/*.scs` file is one test case, played
//! against its own in-process server. See `conformance/README.md` for the script format.
//!
//! `cargo test --test conformance [FILTER]` runs the scripts whose path (relative to
//! `conformance/scripts/`) contains FILTER, and prints libtest-style lines.

mod client;
mod matcher;
mod script;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use client::{Client, Received};
use script::{Action, Script, Step};
use tokio::sync::Semaphore;

/// How long `receives: nothing` waits for silence.
const QUIET: Duration = Duration::from_millis(300);
/// Scripts played at the same time.
const PARALLEL: usize = 4;
/// Upper bound for one whole script.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

const BASE_CONFIG: &str = r#"
[server]
domains = ["localhost"]

[c2s]
listen = ["127.0.0.1:0"]
direct_tls_listen = ["127.0.0.1:0"]
scram_iterations = 4096

[http]
listen = []

[s2s]
listen = []
"#;

fn main() -> std::process::ExitCode {
    // Cargo sets CARGO_MANIFEST_DIR when it runs the test too; prefer that over the value
    // compiled in, which names wherever the binary was built (target directories are shared).
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    let root = manifest_dir.join("conformance");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list = args.iter().any(|a| a == "--list");
    let exact = args.iter().any(|a| a == "--exact");
    let (filters, skips) = filters_of(&args);
    let mut scripts = Vec::new();
    collect(&root.join("scripts"), &mut scripts);
    let mut pending = Vec::new();
    collect(&root.join("pending"), &mut pending);
    let mut all: Vec<Case> = scripts.into_iter().map(|p| Case::new(&root, "scripts", p, false)).collect();
    all.extend(pending.into_iter().map(|p| Case::new(&root, "pending", p, true)));
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let total = all.len();
    let selected: Vec<Case> = all
        .into_iter()
        .filter(|case| {
            let matches = |f: &&str| if exact { case.name == *f } else { case.name.contains(f) };
            (filters.is_empty() || filters.iter().any(matches)) && !skips.iter().any(matches)
        })
        .collect();
    if list {
        for case in &selected {
            println!("{}: test", case.name);
        }
        return std::process::ExitCode::SUCCESS;
    }
    // Pending scripts are libtest's ignored tests: `--ignored` runs only them, `--include-ignored` all.
    let (only_ignored, include_ignored) =
        (args.iter().any(|a| a == "--ignored"), args.iter().any(|a| a == "--include-ignored"));
    let (selected, skipped): (Vec<Case>, Vec<Case>) =
        selected.into_iter().partition(|case| include_ignored || case.pending == only_ignored);
    let ignored: Vec<Case> = skipped.into_iter().filter(|case| case.pending).collect();
    let filtered_out = total - selected.len() - ignored.len();
    println!("\nrunning {} tests", selected.len() + ignored.len());
    for case in &ignored {
        println!("test {} ... ignored", case.name);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let failures = runtime.block_on(run_all(root, selected.iter().map(|c| (c.name.clone(), c.path.clone())).collect()));
    let passed = selected.len() - failures.len();

    if !failures.is_empty() {
        println!("\nfailures:\n");
        for (name, message) in &failures {
            println!("---- {name} ----\n{message}\n");
        }
        println!("failures:");
        for (name, _) in &failures {
            println!("    {name}");
        }
    }
    let verdict = if failures.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; {} ignored; 0 measured; {filtered_out} filtered out; \
         finished in {:.2}s\n",
        failures.len(),
        ignored.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}

/// Positional filters and `--skip` values; the values of libtest's other options are not filters.
fn filters_of(args: &[String]) -> (Vec<&str>, Vec<&str>) {
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--skip" => skips.extend(iter.next().map(String::as_str)),
            "--format" | "--test-threads" | "--color" | "--logfile" | "-Z" => {
                iter.next();
            }
            other if other.starts_with('-') => {}
            other => filters.push(other),
        }
    }
    (filters, skips)
}

async fn run_all(root: PathBuf, scripts: Vec<(String, PathBuf)>) -> Vec<(String, String)> {
    let permits = Arc::new(Semaphore::new(PARALLEL));
    let root = Arc::new(root);
    let mut tasks = tokio::task::JoinSet::new();
    for (name, path) in scripts {
        let permits = permits.clone();
        let root = root.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let outcome = match tokio::time::timeout(SCRIPT_TIMEOUT, run_file(&root, &path)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(anyhow!("the script did not finish within {SCRIPT_TIMEOUT:?}")),
            };
            (name, outcome)
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (name, outcome) = match joined {
            Ok(done) => done,
            Err(e) => (String::from("(unknown script)"), Err(anyhow!("runner task failed: {e}"))),
        };
        match outcome {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED");
                failures.push((name, format!("{e:#}")));
            }
        }
    }
    failures.sort();
    failures
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "scs") {
            out.push(path);
        }
    }
}

/// One script: its name as printed and filtered (relative to `scripts/`, or `pending/…`).
struct Case {
    name: String,
    path: PathBuf,
    pending: bool,
}

impl Case {
    fn new(root: &Path, dir: &str, path: PathBuf, pending: bool) -> Case {
        let relative = path.strip_prefix(root.join(dir)).unwrap_or(&path).to_string_lossy().replace('\\', "/");
        let name = if pending { format!("pending/{relative}") } else { relative };
        Case { name, path, pending }
    }
}

/// Plays one script file against a fresh server.
async fn run_file(root: &Path, path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let script = Script::parse(&text).map_err(|e| anyhow!("{}:{e}", path.display()))?;
    check_tags(root, &script).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let data_dir = tempfile::tempdir()?;
    let config = server_config(root, &script, data_dir.path())?;
    let server = starling::server::Server::build(config).await?;
    let running = starling::server::serve(server.clone()).await?;
    let addr = *running.c2s_direct_tls.first().context("no direct TLS listener")?;
    let mut created = Vec::new();
    for client in &script.clients {
        let jid = jid::BareJid::new(&client.jid).with_context(|| format!("client {}: bad jid", client.name))?;
        // Several clients may share an account; the first one's password creates it.
        if server.host(jid.domain().as_str()).is_some() && !created.contains(&jid) {
            created.push(jid.clone());
            server.accounts.create(&jid, &client.password).await.with_context(|| format!("creating {jid}"))?;
        }
    }
    let outcome = play(&script, addr).await.map_err(|e| anyhow!("{}:{e:#}", path.display()));
    running.stop();
    outcome
}

/// `## xep:` tags must name a record in `xeps/`.
fn check_tags(root: &Path, script: &Script) -> anyhow::Result<()> {
    let xeps = root.parent().unwrap_or(root).join("xeps");
    for (tag, value) in &script.tags {
        if tag != "xep" {
            continue;
        }
        for item in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let compact: String = item.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
            let file = match compact.strip_prefix("rfc") {
                Some(number) => format!("rfc-{number}.toml"),
                None => format!("xep-{:0>4}.toml", compact.trim_start_matches("xep-").trim_start_matches("xep")),
            };
            if !xeps.join(&file).is_file() {
                bail!("## xep: {item} has no record xeps/{file}");
            }
        }
    }
    Ok(())
}

/// The base configuration, with `conformance/configs/<name>.toml` merged over it for each
/// `## config: <name>` tag.
fn server_config(root: &Path, script: &Script, data_dir: &Path) -> anyhow::Result<starling::config::Config> {
    let mut table: toml::Table = BASE_CONFIG.parse()?;
    for (tag, value) in &script.tags {
        if tag == "config" {
            let file = root.join("configs").join(format!("{}.toml", value.trim()));
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            merge(&mut table, text.parse().with_context(|| format!("parsing {}", file.display()))?);
        }
    }
    let text = toml::to_string(&table)?;
    let checks = starling::modules::config_checks();
    let mut config = starling::config::Config::parse(&text, &checks).map_err(|e| anyhow!("config: {e}"))?;
    config.server.data_dir = data_dir.to_path_buf();
    config.storage.url = Some("sqlite::memory:".into());
    Ok(config)
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(more)) => merge(inner, more),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Runs the steps in order; the error starts with the failing line number.
async fn play(script: &Script, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut clients: Vec<Slot> = script.clients.iter().map(|_| Slot::default()).collect();
    for step in &script.steps {
        run_step(script, step, addr, &mut clients).await.map_err(|e| anyhow!("{}: {e:#}", step.line))?;
    }
    for client in clients.into_iter().filter_map(|slot| slot.client) {
        let _ = client.close().await;
    }
    Ok(())
}

/// A script client: its connection while connected, and the full JID it was last bound to.
#[derive(Default)]
struct Slot {
    client: Option<Client>,
    last_jid: Option<String>,
}

async fn run_step(
    script: &Script,
    step: &Step,
    addr: std::net::SocketAddr,
    clients: &mut [Slot],
) -> anyhow::Result<()> {
    let spec = &script.clients[step.client];
    let name = &spec.name;
    if let Action::Connects = step.action {
        let (user, domain) = spec.jid.split_once('@').context("jid needs a node")?;
        let resource = spec.resource.clone().unwrap_or_else(|| format!("{}-conformance", name.to_lowercase()));
        let client = Client::connect(addr, domain, user, &spec.password, &resource).await?;
        clients[step.client] = Slot { last_jid: Some(client.jid.clone()), client: Some(client) };
        return Ok(());
    }
    let text = match &step.action {
        Action::Sends(xml) | Action::Receives(xml) => substitute(xml, script, clients)?,
        _ => String::new(),
    };
    let client = clients[step.client].client.as_mut().with_context(|| format!("{name} is not connected"))?;
    match &step.action {
        Action::Connects => Ok(()),
        Action::Sends(_) => client.send_raw(&text).await,
        Action::Receives(_) => {
            let expected = matcher::parse_expected(&text)?;
            let received = match client.recv_within(client::RECV_TIMEOUT).await? {
                Some(Received::Element(el)) => el,
                Some(Received::Closed) => {
                    bail!("{name} expected\n{}\nbut the server closed the stream", matcher::show(&expected))
                }
                None => bail!(
                    "{name} expected\n{}\nbut received nothing within {:?}",
                    matcher::show(&expected),
                    client::RECV_TIMEOUT
                ),
            };
            matcher::compare(&expected, &received).map_err(|why| {
                anyhow!(
                    "{name} received a stanza that does not match ({why})\nexpected:\n{}\nreceived:\n{}",
                    matcher::show(&expected),
                    matcher::show(&received)
                )
            })
        }
        Action::ReceivesNothing => match client.recv_within(QUIET).await? {
            None => Ok(()),
            Some(Received::Element(el)) => bail!("{name} expected nothing but received\n{}", matcher::show(&el)),
            Some(Received::Closed) => bail!("{name} expected nothing but the server closed the stream"),
        },
        Action::Disconnects => match clients[step.client].client.take() {
            Some(client) => client.close().await,
            None => Ok(()),
        },
    }
}

/// Replaces `${Name's full JID}` and `${Name's JID}`.
fn substitute(text: &str, script: &Script, clients: &[Slot]) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map(|e| start + e).context("unterminated ${")?;
        let var = &rest[start + 2..end];
        out.push_str(&resolve(var, script, clients)?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(var: &str, script: &Script, clients: &[Slot]) -> anyhow::Result<String> {
    let (who, what) = var.split_once("'s ").with_context(|| format!("unknown variable ${{{var}}}"))?;
    let index = script.client_index(who).with_context(|| format!("unknown client in ${{{var}}}"))?;
    let spec = &script.clients[index];
    match what {
        "JID" => Ok(spec.jid.clone()),
        "full JID" => match &clients[index].last_jid {
            Some(jid) => Ok(jid.clone()),
            None => match &spec.resource {
                Some(resource) => Ok(format!("{}/{resource}", spec.jid)),
                None => bail!("${{{var}}} before {who} connected"),
            },
        },
        _ => bail!("unknown variable ${{{var}}}"),
    }
}
