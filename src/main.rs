//! Command line: `run`, `check-config`, `print-default-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quoalise_component::admin::{self, AdminCommand};
use quoalise_component::config;
use quoalise_component::settings::{self, Config, Settings};

#[derive(Parser)]
#[command(
    version,
    about = "XEP-0114 component publishing energy data in the Quoalise protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the XMPP server and serve until SIGINT/SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file; exit 0 when valid.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the documented example configuration.
    PrintDefaultConfig,
    /// Work on the store directly, while the component runs or not.
    Admin {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        area: AdminArea,
    },
}

#[derive(Subcommand)]
enum AdminArea {
    /// Access grants.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// Consents customers gave (sources that take them).
    #[command(subcommand)]
    Consents(ConsentsCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
enum ConsentsCommand {
    /// Consents in force, one line each.
    List {
        /// Only those on this usage point.
        #[arg(long)]
        usage_point: Option<String>,
    },
    /// Revokes every consent in force on a usage point, and their grants; exit 1 when there
    /// is none.
    Revoke { usage_point: String },
}

#[derive(Subcommand)]
enum GrantsCommand {
    /// Grants not revoked (expired ones included), one line each.
    List {
        /// Only this bare JID's.
        #[arg(long)]
        jid: Option<String>,
    },
    /// Adds a grant (origin `admin`: the file's [[access.grant]] never touches it).
    Add {
        #[arg(long)]
        jid: String,
        #[arg(long, default_value = "*")]
        usage_point: String,
        #[arg(long, default_value = "*")]
        series: String,
        #[arg(long)]
        purpose: Option<String>,
        /// ISO 8601 instant or date; none: no expiry.
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// Revokes a grant by number; exit 1 when there is no such grant in force.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; exit 0 when intact, 1 naming the first broken entry.
    Verify,
    /// Print every entry with its chain columns, as JSON lines.
    Export,
    /// Print the entries of a usage point and/or a requester, one line each, oldest first.
    #[command(group(clap::ArgGroup::new("whose").required(true).multiple(true)))]
    Show {
        #[arg(long, group = "whose")]
        usage_point: Option<String>,
        /// Bare JID.
        #[arg(long, group = "whose")]
        requester: Option<String>,
        /// Entries appended from this instant (ISO 8601 or date; none: since the start).
        #[arg(long)]
        from: Option<String>,
        /// Entries appended before this instant (ISO 8601 or date; none: no end).
        #[arg(long)]
        to: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::PrintDefaultConfig => {
            print!("{}", settings::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::CheckConfig { config } => match load(&config) {
            Ok(settings) => {
                println!(
                    "{}: valid (domain {}, {} source(s), {} admin(s), {} grant table(s))",
                    config.display(),
                    settings.domain,
                    settings.config.sources.len(),
                    settings.admins.len(),
                    settings.config.access.grants.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Admin { config, area } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            let command = match area {
                AdminArea::Grants(GrantsCommand::List { jid }) => AdminCommand::GrantsList { jid },
                AdminArea::Grants(GrantsCommand::Add {
                    jid,
                    usage_point,
                    series,
                    purpose,
                    valid_until,
                }) => AdminCommand::GrantsAdd {
                    jid,
                    usage_point,
                    series,
                    purpose,
                    valid_until,
                },
                AdminArea::Grants(GrantsCommand::Revoke { id }) => {
                    AdminCommand::GrantsRevoke { id }
                }
                AdminArea::Audit(AuditCommand::Verify) => AdminCommand::AuditVerify,
                AdminArea::Audit(AuditCommand::Export) => AdminCommand::AuditExport,
                AdminArea::Audit(AuditCommand::Show {
                    usage_point,
                    requester,
                    from,
                    to,
                }) => AdminCommand::AuditShow {
                    usage_point,
                    requester,
                    from,
                    to,
                },
                AdminArea::Consents(ConsentsCommand::List { usage_point }) => {
                    AdminCommand::ConsentsList { usage_point }
                }
                AdminArea::Consents(ConsentsCommand::Revoke { usage_point }) => {
                    AdminCommand::ConsentsRevoke { usage_point }
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(admin::run(&settings, command)) {
                Ok(outcome) => {
                    print!("{}", outcome.output);
                    if outcome.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { config } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            init_logging(&settings.config.log.level);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(quoalise_component::app::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn load(path: &std::path::Path) -> Result<Settings, config::ConfigError> {
    Config::load(path)?.validate(std::env::var(settings::SECRET_ENV).ok())
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
