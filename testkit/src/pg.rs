//! A throwaway PostgreSQL cluster: `initdb` in a temp dir, `pg_ctl start` on a free port, stopped
//! and deleted on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root every server command goes
//! through `runuser -u postgres` and the temp dir is handed to that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::{Connection, PgConnection};

/// Where Debian-style packages install the server binaries, one folder per major version.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// Overrides the binary folder (the one holding `initdb` and `pg_ctl`).
const BINDIR_ENV: &str = "PG_BINDIR";

/// Tries, each on a new port, since another process can take the port between our probe and the
/// server's bind.
const START_ATTEMPTS: u32 = 3;

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run server commands as the `postgres` system user (we are root).
    as_postgres: bool,
}

impl PgCluster {
    /// Creates and starts a cluster; panics with the reason (and the server log) on failure.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("quoalise-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for PostgreSQL: {e}"));
        if as_postgres {
            let (uid, gid) = postgres_user();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap_or_else(|e| {
                panic!("cannot hand {} to user postgres: {e}", dir.path().display())
            });
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            port: 0,
            as_postgres,
        };

        let data = cluster.data_dir();
        // An ICU English collation, as production clusters usually have, rather than C: it sorts
        // differently from SQLite, so tests notice a query that relies on the default collation.
        cluster.run(
            "initdb",
            &[
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--locale-provider=icu",
                "--icu-locale=en-US",
                "--no-sync",
                "-D",
                path_str(&data),
            ],
        );

        let log = cluster.dir.path().join("server.log");
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off",
                path_str(cluster.dir.path())
            );
            let output = cluster.output(
                "pg_ctl",
                &[
                    "-D",
                    path_str(&data),
                    "-l",
                    path_str(&log),
                    "-o",
                    &options,
                    "-w",
                    "start",
                ],
            );
            if output.status.success() {
                cluster.port = port;
                return cluster;
            }
            if attempt == START_ATTEMPTS {
                let server_log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "PostgreSQL did not start: {}\n--- server log ---\n{server_log}",
                    describe(&output)
                );
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db` as superuser `postgres` (trust authentication).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL. Names are plain identifiers
    /// (`[a-z0-9_]`), one per test so that tests sharing the cluster do not see each other.
    pub async fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database name {name:?} is not a plain identifier"
        );
        let mut conn = PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        // Best effort: the database exists either way.
        let _ = conn.close().await;
        self.url(name)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        // The postgres user may not be allowed into our working directory.
        command.current_dir(self.dir.path());
        command
    }

    fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                let via = if self.as_postgres { " via runuser" } else { "" };
                panic!("cannot run {program}{via}: {e}")
            })
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.output(program, args);
        assert!(
            output.status.success(),
            "{program} failed: {}",
            describe(&output)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate: the data is thrown away, no need for a clean checkpoint. Errors are ignored
        // since a panic in drop would hide the test's own failure; the temp dir goes anyway.
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .args(["-D", path_str(&data), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// `$PG_BINDIR`, else the newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("pg_ctl").is_file(),
            "{BINDIR_ENV}={} holds no initdb and pg_ctl",
            dir.display()
        );
        return dir;
    }
    let newest = std::fs::read_dir(DEBIAN_PG_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found in {DEBIAN_PG_ROOT}/<version>/bin: install the \
             server package (apt-get install postgresql) or set {BINDIR_ENV}"
        ),
    }
}

fn is_root() -> bool {
    id(&["-u"]) == 0
}

fn postgres_user() -> (u32, u32) {
    (id(&["-u", "postgres"]), id(&["-g", "postgres"]))
}

fn id(args: &[&str]) -> u32 {
    let output = Command::new("id")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run id: {e}"));
    assert!(
        output.status.success(),
        "id {} failed (PostgreSQL cannot run as root, and a `postgres` system user is needed to \
         run it from root: install the server package): {}",
        args.join(" "),
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("id {} printed no number: {e}", args.join(" ")))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("bound socket has no address: {e}"))
        .port()
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("temp path {} is not UTF-8", path.display()))
}

fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
