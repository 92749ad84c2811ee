//! `guard-fleet`: parses the command line and dispatches; `guard fleet …` runs this.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use guard_fleet::{
    auth::{Scope, tokens},
    client::{self, Remote},
    config::Config,
    server,
    store::Store,
    web::params::SessionParams,
};

/// guard's fleet server: every host's agent sessions in one place.
#[derive(Parser)]
#[command(name = "guard-fleet", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive OTLP/HTTP logs from guard hosts and serve the dashboard.
    Serve {
        /// The configuration file (docs/fleet.md); none: a trial on this machine.
        #[arg(long, short, env = "GUARD_FLEET_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Apply the database migrations, then exit.
    Migrate {
        #[arg(long, short, env = "GUARD_FLEET_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print a new random token and its entry for the tokens file.
    Token {
        /// The host's name (scope host), the cluster's, or the person's.
        #[arg(long, default_value = "NAME")]
        name: String,
        /// host, cluster, dashboard or admin (dashboard, and policies).
        #[arg(long, default_value = "host", value_parser = parse_scope)]
        scope: Scope,
    },
    /// Make the key policies served to hosts are signed with (`--new`), or print
    /// an existing key's public half: what hosts pin as `[fleet] public_key`.
    PolicyKey {
        /// The key file (PKCS#8), as `[policy] signing_key` names it.
        path: PathBuf,
        /// Make a new key there (an existing file is never replaced).
        #[arg(long)]
        new: bool,
    },
    /// Upload, assign and list policies on a fleet server (an admin token).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Make, remove and list the alert rules kept in the fleet (an admin token;
    /// the configuration file's rules are changed there).
    #[command(subcommand)]
    AlertRule(AlertRuleCommand),
    /// List sessions from a fleet server.
    Sessions {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(flatten)]
        filters: Box<Filters>,
        /// The API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one session's report from a fleet server.
    Report {
        /// The session: its uid, or its 16-digit id.
        session: String,
        /// The host, when several sent a session with this id.
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        json: bool,
    },
    /// Forward the stored violations as OCSF Detection Findings, one JSON object a
    /// line on standard output (for the SIEM's shipper), in the order they
    /// happened; the last line's cursor goes to standard error.
    Violations {
        #[command(flatten)]
        remote: RemoteArgs,
        /// From this time: YYYY-MM-DD, RFC 3339, or an age (1d).
        #[arg(long)]
        since: Option<String>,
        /// After this cursor (what the last run printed): nothing twice.
        #[arg(long)]
        after: Option<String>,
        /// Keep going: ask again every 10 s for what was stored since.
        #[arg(long)]
        follow: bool,
        /// The violations as stored, instead of OCSF.
        #[arg(long)]
        json: bool,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    match s {
        "host" => Ok(Scope::Host),
        "cluster" => Ok(Scope::Cluster),
        "dashboard" => Ok(Scope::Dashboard),
        "admin" => Ok(Scope::Admin),
        _ => Err("host, cluster, dashboard or admin".to_owned()),
    }
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check FILE with the daemon's parser and store it as policy NAME's next
    /// version (refused with its diagnostics if it has errors).
    Push {
        name: String,
        file: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Assign policy NAME's VERSION to the hosts of GROUP: `observe` first (what
    /// it would do is shown), then `enforce`.
    Assign {
        group: String,
        name: String,
        version: i64,
        #[arg(long, default_value = "observe", value_parser = ["observe", "enforce"])]
        mode: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Replay a stored session's events against policy NAME's VERSION: which rules
    /// would fire, against what fired then (`guard policy test`, in the fleet), as
    /// JSON.
    Test {
        name: String,
        version: i64,
        /// The session (its uid, or its 16-digit id).
        #[arg(long)]
        session: String,
        /// The session's host, when its id is not unique.
        #[arg(long)]
        host: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The stored versions and every group's assignment, as JSON.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Subcommand)]
enum AlertRuleCommand {
    /// Make or replace alert rule NAME: the events it catches go to each `--to`
    /// destination (`[[alerts.destination]]`'s names). Without `--kind` it catches
    /// violations; without `--rule` or `--outcome`, any.
    Set {
        name: String,
        /// A destination (repeat for several).
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// An event kind: host_silent, policy_rejected, anomaly, tamper, …
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// A policy rule id.
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// An outcome: killed, denied, alerted, logged, …
        #[arg(long = "outcome")]
        outcomes: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Remove alert rule NAME (what it queued is still delivered).
    Delete {
        name: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The rules in force (the file's and the fleet's) and the destinations, as JSON.
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Args)]
struct RemoteArgs {
    /// The fleet server.
    #[arg(
        long,
        env = "GUARD_FLEET_SERVER",
        default_value = "http://127.0.0.1:4318"
    )]
    server: String,
    /// A dashboard token.
    #[arg(
        long,
        env = "GUARD_FLEET_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding a dashboard token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Trust this CA (PEM) for the server's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl RemoteArgs {
    fn remote(self) -> anyhow::Result<Remote> {
        let token = match (self.token, self.token_file) {
            (Some(t), _) => t,
            (None, Some(f)) => std::fs::read_to_string(&f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .trim()
                .to_owned(),
            (None, None) => {
                anyhow::bail!("no dashboard token: --token, --token-file or $GUARD_FLEET_TOKEN")
            }
        };
        Ok(Remote {
            server: self.server,
            token,
            ca: self.ca,
        })
    }
}

/// The sessions table's filters (the same as the dashboard's).
#[derive(Args)]
struct Filters {
    /// Started at or after: YYYY-MM-DD, RFC 3339, or an age (7d).
    #[arg(long)]
    from: Option<String>,
    /// Started up to: YYYY-MM-DD (inclusive), RFC 3339, or an age.
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    user: Option<String>,
    /// A part of the repository URL.
    #[arg(long)]
    repo: Option<String>,
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    /// Sessions that broke this rule.
    #[arg(long)]
    rule: Option<String>,
    /// Sessions with a violation of this outcome (denied, killed, alerted, logged, …).
    #[arg(long)]
    outcome: Option<String>,
    /// running (now) or ended.
    #[arg(long)]
    state: Option<String>,
    /// Sessions that sent to this destination (its name, else its address).
    #[arg(long)]
    dest: Option<String>,
    /// start, duration, bytes or violations.
    #[arg(long)]
    sort: Option<String>,
    /// asc or desc.
    #[arg(long)]
    order: Option<String>,
    #[arg(long)]
    page: Option<u32>,
    #[arg(long)]
    per_page: Option<u32>,
}

impl From<Filters> for SessionParams {
    fn from(f: Filters) -> Self {
        Self {
            from: f.from,
            to: f.to,
            user: f.user,
            repo: f.repo,
            host: f.host,
            agent: f.agent,
            rule: f.rule,
            outcome: f.outcome,
            state: f.state,
            dest: f.dest,
            sort: f.sort,
            order: f.order,
            page: f.page.map(|p| p.to_string()),
            per_page: f.per_page.map(|p| p.to_string()),
            format: None,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guard-fleet: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guard-fleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            let running = server::start(config).await?;
            shutdown_signal().await;
            tracing::info!("stopping");
            running.shutdown(Duration::from_secs(10)).await?;
        }
        Command::Migrate { config } => {
            let config = Config::load(config.as_deref())?;
            config.ensure_state_dir()?;
            let store = Store::connect(&config.database).await?;
            store.migrate().await?;
            store.close().await;
            println!("migrated");
        }
        Command::Token { name, scope } => {
            tokens::check_name(&name, scope).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let token = tokens::generate()?;
            println!(
                "# the token (give it to the {}; it is shown once):",
                scope.as_str()
            );
            println!("{token}");
            println!("# the entry for the tokens file:");
            print!("{}", tokens::entry(&name, scope, &token));
        }
        Command::PolicyKey { path, new } => {
            let signer = if new {
                guard_fleet::signing::Signer::create(&path)?
            } else {
                guard_fleet::signing::Signer::load(&path)?
            };
            println!("# the public key, for each host's [fleet] public_key:");
            println!("{}", signer.public_key());
        }
        Command::Policy(cmd) => policy_command(cmd).await?,
        Command::AlertRule(cmd) => alert_rule_command(cmd).await?,
        Command::Sessions {
            remote,
            filters,
            json,
        } => {
            let page = remote.remote()?.sessions(&(*filters).into()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print!("{}", client::sessions_table(&page));
            }
        }
        Command::Violations {
            remote,
            since,
            after,
            follow,
            json,
        } => {
            let remote = remote.remote()?;
            let mut after = after;
            loop {
                let page = remote
                    .violations(after.as_deref(), since.as_deref(), json)
                    .await?;
                {
                    use std::io::Write as _;
                    let mut out = std::io::stdout().lock();
                    for r in &page.records {
                        if writeln!(out, "{r}").is_err() {
                            return Ok(()); // the reader went away
                        }
                    }
                    let _ = out.flush();
                }
                match page.next {
                    Some(next) => {
                        eprintln!("next: {next}");
                        after = Some(next);
                    }
                    None if follow => tokio::time::sleep(Duration::from_secs(10)).await,
                    None => break,
                }
            }
        }
        Command::Report {
            session,
            host,
            remote,
            json,
        } => {
            let d = remote.remote()?.session(&session, host.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", client::report_text(&d));
            }
        }
    }
    Ok(())
}

/// SIGTERM (Kubernetes, systemd) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn alert_rule_command(cmd: AlertRuleCommand) -> anyhow::Result<()> {
    use guard_fleet::client::Body;
    let answer: serde_json::Value = match cmd {
        AlertRuleCommand::Set {
            name,
            to,
            kinds,
            rules,
            outcomes,
            remote,
        } => {
            let body = serde_json::json!({
                "kinds": kinds, "rules": rules, "outcomes": outcomes, "to": to,
            });
            let path = format!("/api/alert-rules/{name}");
            remote
                .remote()?
                .send(reqwest::Method::PUT, &path, Some(Body::Json(body)))
                .await?
        }
        AlertRuleCommand::Delete { name, remote } => {
            let path = format!("/api/alert-rules/{name}");
            remote
                .remote()?
                .send(reqwest::Method::DELETE, &path, None)
                .await?
        }
        AlertRuleCommand::List { remote } => remote.remote()?.get("/api/alert-rules").await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

async fn policy_command(cmd: PolicyCommand) -> anyhow::Result<()> {
    use guard_fleet::client::Body;
    let answer: serde_json::Value = match cmd {
        PolicyCommand::Push { name, file, remote } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let path = format!("/api/policies/{name}");
            remote
                .remote()?
                .send(reqwest::Method::POST, &path, Some(Body::Text(text)))
                .await?
        }
        PolicyCommand::Assign {
            group,
            name,
            version,
            mode,
            remote,
        } => {
            let body = serde_json::json!({"policy": name, "version": version, "mode": mode});
            let path = format!("/api/assignments/{group}");
            remote
                .remote()?
                .send(reqwest::Method::PUT, &path, Some(Body::Json(body)))
                .await?
        }
        PolicyCommand::Test {
            name,
            version,
            session,
            host,
            remote,
        } => {
            let q = |v: &str| {
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            let mut path = format!(
                "/api/policies/{name}/{version}/test?session={}",
                q(&session)
            );
            if let Some(h) = host {
                path.push_str(&format!("&host={}", q(&h)));
            }
            remote.remote()?.get(&path).await?
        }
        PolicyCommand::List { remote } => remote.remote()?.get("/api/policies").await?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
