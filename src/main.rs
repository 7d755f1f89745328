//! The `starling` command: run the server, manage accounts, check a configuration.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use starling::config::Config;
use starling::server::{Server, serve};
use starling::storage::Storage;
use starling::storage::accounts::Accounts;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "starling", version, about = "An XMPP server")]
struct Cli {
    /// Configuration file (TOML). Without one, the built-in defaults serve `localhost`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account (`name` or `name@domain`); the password comes from --password or stdin.
    Add {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and all its data.
    Delete { jid: String },
    /// List the accounts of a domain (default: every served domain).
    List { domain: Option<String> },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Parse and validate the configuration, reporting every problem.
    Check,
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let checks = starling::modules::config_checks();
    match path {
        Some(path) => Config::load(path, &checks).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display())),
        None => Config::parse("", &checks).map_err(|e| anyhow::anyhow!("{e}")),
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Commits mimalloc's arenas as they are used rather than up front: an idle session then costs
/// about 8% less memory, for no measurable change in throughput (BENCHMARKS.md, "Allocator").
///
/// Transparent huge pages are turned off for the process. mimalloc asks for them on its arenas,
/// and where the kernel grants them (`madvise` or `always` mode), every page it hands out again
/// after purging it faults in a whole 2 MiB page, zeroed: about 4% of the server's CPU in the
/// chat benchmark, and 20-30 MiB more resident memory (BENCHMARKS.md, "Per-message CPU in
/// one-to-one chat").
fn tune_allocator() {
    // SAFETY: sets a process-wide option that mimalloc reads when it next reserves memory;
    // no allocation is in progress on another thread this early in main.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours; it only
    // sets a flag the kernel checks when it next faults in anonymous memory. A kernel without
    // it (before 3.15) fails the call, which changes nothing.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0)
    };
}

/// `mi_option_arena_eager_commit` in mimalloc's `mi_option_e` (the bindings do not name it).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// mimalloc instead of the system allocator: in the chat benchmark glibc's malloc and free
/// took about a quarter of the server's CPU (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    let config = load_config(cli.config.as_ref())?;
    match cli.command {
        Command::Serve => {
            init_logging(&config);
            run_server(config, cli.config.is_none()).await
        }
        Command::User { action } => user_command(config, action).await,
        Command::Config { action: ConfigAction::Check } => {
            println!(
                "configuration is valid: {} domain(s), storage {}",
                config.server.domains.len(),
                config.storage_url()
            );
            Ok(())
        }
    }
}

async fn run_server(config: Config, defaults: bool) -> anyhow::Result<()> {
    let server = Server::build(config).await?;
    let running = serve(server.clone()).await?;
    if defaults {
        println!(
            "Starling is serving localhost (client port {}). Add a user with:\n  starling user add alice --password secret\n\
             then log in as alice@localhost (the certificate is self-signed).",
            running.c2s.first().map(|a| a.port()).unwrap_or(5222)
        );
    }
    tokio::signal::ctrl_c().await.context("waiting for shutdown signal")?;
    tracing::info!("shutting down");
    running.stop();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(())
}

fn account_jid(config: &Config, text: &str) -> anyhow::Result<jid::BareJid> {
    let full = if text.contains('@') {
        text.to_owned()
    } else {
        let domain = config.server.domains.first().context("no domain configured")?;
        format!("{text}@{domain}")
    };
    jid::BareJid::new(&full).with_context(|| format!("{full} is not a valid account JID"))
}

fn password(given: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("no password given (use --password or write it to stdin)");
    }
    Ok(p)
}

async fn user_command(config: Config, action: UserAction) -> anyhow::Result<()> {
    if config.storage.url.is_none() {
        std::fs::create_dir_all(&config.server.data_dir)?;
    }
    let storage = Storage::open(&config.storage_url()).await?;
    let accounts = Accounts::new(storage, config.server.domains.clone(), config.c2s.scram_iterations);
    match action {
        UserAction::Add { jid, password: p } => {
            let jid = account_jid(&config, &jid)?;
            accounts.create(&jid, &password(p)?).await?;
            println!("created {jid}");
        }
        UserAction::Passwd { jid, password: p } => {
            let jid = account_jid(&config, &jid)?;
            accounts.set_password(&jid, &password(p)?).await?;
            println!("password changed for {jid}");
        }
        UserAction::Delete { jid } => {
            let jid = account_jid(&config, &jid)?;
            accounts.delete(&jid).await?;
            println!("deleted {jid}");
        }
        UserAction::List { domain } => {
            let domains = domain.map(|d| vec![d]).unwrap_or(config.server.domains.clone());
            for domain in domains {
                for user in accounts.list(&domain).await? {
                    println!("{user}@{domain}");
                }
            }
        }
    }
    Ok(())
}
