//! A private PostgreSQL server for a test: a cluster made by Debian's
//! `initdb` in a temporary directory, listening only on a Unix socket in
//! that directory (and on 127.0.0.1 with [`PgServer::start_tcp`]), trust
//! authentication, stopped (immediately) and removed on drop.
//!
//! `initdb` and the server refuse to run as root: run as root (CI, this
//! project's machines), they run as the `postgres` system user that
//! Debian's package creates, in a directory handed to it. Used by the
//! engine's contract tests (`coordinator/src/postgres/tests.rs`, which
//! includes this file) and the HA end-to-end test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The port in the socket's name (and on 127.0.0.1 with TCP).
const SOCKET_PORT: u16 = 5432;

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Run the server's tools as this user (`Some("postgres")` as root).
    run_as: Option<String>,
    port: u16,
    tcp: bool,
}

/// The directory of Debian's server binaries (the newest version there).
fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect(
        "no PostgreSQL server under /usr/lib/postgresql: install Debian's postgresql \
         (softhsm-setup/install-deps.sh does)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(user: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// A server on a Unix socket only.
    pub fn start() -> PgServer {
        Self::start_with(false, false, None)
    }

    /// A server on a Unix socket and on 127.0.0.1 (a free port).
    pub fn start_tcp() -> PgServer {
        Self::start_with(true, false, None)
    }

    /// A server that syncs its WAL to disk as in production (the bench's
    /// comparison with SQLite); the others skip fsync, for speed.
    pub fn start_durable() -> PgServer {
        Self::start_with(false, true, None)
    }

    /// A server on 127.0.0.1 too, taking there only TLS connections with
    /// a password and a client certificate issued by `certs/ca.pem`; its
    /// own certificate is `certs/coordinator.pem` (named `localhost` and
    /// 127.0.0.1, as `ringi dev-certs` makes it). The Unix socket stays
    /// trusted, for the test's own setup.
    pub fn start_tls(certs: &Path) -> PgServer {
        Self::start_with(true, false, Some(certs))
    }

    fn start_with(tcp: bool, durable: bool, tls: Option<&Path>) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("ringi-pg")
            .tempdir()
            .unwrap();
        let run_as = is_root().then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            std::os::unix::fs::chown(dir.path(), Some(id_of(user, "-u")), Some(id_of(user, "-g")))
                .unwrap();
        }
        let port = if tcp { free_port() } else { SOCKET_PORT };
        let server = PgServer {
            dir,
            bin: server_bin(),
            run_as,
            port,
            tcp,
        };
        let data = server.data();
        server.tool(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let mut conf = format!(
            "\nlisten_addresses = '{}'\nport = {port}\nunix_socket_directories = '{}'\nmax_connections = 200\n",
            if tcp { "127.0.0.1" } else { "" },
            server.socket_dir().display()
        );
        if !durable {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        if let Some(certs) = tls {
            // The server's files, readable by the server's user only (it
            // refuses a key others can read).
            for (from, to) in [
                ("coordinator.pem", "server.crt"),
                ("coordinator.key", "server.key"),
                ("ca.pem", "ca.crt"),
            ] {
                let path = data.join(to);
                std::fs::copy(certs.join(from), &path).unwrap();
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
                if let Some(user) = &server.run_as {
                    std::os::unix::fs::chown(
                        &path,
                        Some(id_of(user, "-u")),
                        Some(id_of(user, "-g")),
                    )
                    .unwrap();
                }
            }
            conf.push_str(
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'\npassword_encryption = 'scram-sha-256'\n",
            );
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
        }
        let path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
        let log = server.dir.path().join("server.log");
        server.tool(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the server's socket is (and its log, `server.log`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp.then_some(self.port)
    }

    fn tool(&self, name: &str, args: &[&str]) {
        let program = self.bin.join(name);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name} {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// A connection string for database `dbname` over the Unix socket.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Runs `sql` in database `dbname` (as the superuser).
    pub fn execute(&self, dbname: &str, sql: &str) {
        let mut client = postgres::Client::connect(&self.url(dbname), postgres::NoTls).unwrap();
        client.batch_execute(sql).unwrap();
    }

    /// Creates database `name`; its connection string.
    pub fn create_database(&self, name: &str) -> String {
        self.execute("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bin.join("pg_ctl");
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let _ = cmd
            .args([
                "-D",
                data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
