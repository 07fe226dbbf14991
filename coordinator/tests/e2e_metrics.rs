//! Metrics and logs as an operator runs them (issue 16): the coordinator
//! and the signers serve Prometheus metrics on their `metrics_listen`
//! address only when it is configured, the counters and histograms move by
//! exactly what one signing does, no label carries a key id, request or
//! PIN; `--log-format json` (flag or config) writes one JSON object a line,
//! and no log written to a file carries ANSI colours.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// A port free on loopback right now (the daemon binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The TCP ports process `pid` listens on (its sockets in LISTEN state).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; st 0A is LISTEN; inode is column 9.
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                let port = cols[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

/// GET /metrics over plain HTTP; the body.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of the series `name` whose labels include every `labels`
/// pair (0 if there is none): a counter, a gauge, or a histogram's
/// `_count`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, number)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        {
            assert!(found.is_none(), "{name} {labels:?} matches two series");
            found = Some(number.parse::<f64>().unwrap());
        }
    }
    found.unwrap_or(0.0)
}

/// How much a series grew between two scrapes.
fn delta(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(after, name, labels) - value(before, name, labels)
}

/// Every non-empty line of `log` is a JSON object with the fields of
/// tracing-subscriber's JSON format; returns how many.
fn json_lines(log: &str) -> usize {
    let mut n = 0;
    for line in log.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["level"].is_string(), "{line}");
        assert!(v["target"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
        n += 1;
    }
    n
}

#[test]
fn metrics_are_off_by_default() {
    let cluster = Cluster::start(1);
    let coordinator = cluster.coordinator.as_ref().unwrap().id();
    assert_eq!(
        listening_ports(coordinator),
        BTreeSet::from([port_of(&cluster.coordinator_address)]),
        "the coordinator listens on its gRPC address only"
    );
    let signer = &cluster.signers[0];
    assert_eq!(
        listening_ports(signer.child.as_ref().unwrap().id()),
        BTreeSet::from([port_of(&signer.address)]),
        "the signer listens on its gRPC address only"
    );
    // Text logs (the default) into a file: no colours.
    let log = std::fs::read_to_string(cluster.dir.path().join("coordinator.log")).unwrap();
    assert!(log.contains("coordinator state ready"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape in a log file: {log:?}"
    );
}

#[test]
fn metrics_count_a_signing_and_json_logs_parse() {
    let mut cluster = Cluster::start(2);
    // Metrics on: the coordinator by its config (with JSON logs), each
    // signer by --metrics-listen's environment variable, signer-1 with
    // --log-format json's.
    let coordinator_port = free_port();
    cluster.stop_coordinator();
    let config = std::fs::read_to_string(cluster.config_path()).unwrap();
    std::fs::write(
        cluster.config_path(),
        format!(
            "metrics_listen = \"127.0.0.1:{coordinator_port}\"\nlog_format = \"json\"\n{config}"
        ),
    )
    .unwrap();
    let mut signer_ports = Vec::new();
    for (i, node) in cluster.signers.iter_mut().enumerate() {
        node.stop();
        let port = free_port();
        node.env.push((
            "RINGI_SIGNER_METRICS_LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ));
        if i == 0 {
            node.env.push(("RINGI_LOG_FORMAT".into(), "json".into()));
        }
        node.start();
        signer_ports.push(port);
    }
    cluster.start_coordinator();

    // Each process listens on its gRPC address and its metrics address.
    let coordinator_pid = cluster.coordinator.as_ref().unwrap().id();
    assert_eq!(
        listening_ports(coordinator_pid),
        BTreeSet::from([port_of(&cluster.coordinator_address), coordinator_port])
    );
    for (node, port) in cluster.signers.iter().zip(&signer_ports) {
        assert_eq!(
            listening_ports(node.child.as_ref().unwrap().id()),
            BTreeSet::from([port_of(&node.address), *port])
        );
    }

    cluster.keygen("hot-1", 2, &["signer-1", "signer-2"]);
    let keygen = scrape(coordinator_port);
    assert_eq!(
        value(
            &keygen,
            "ringi_key_operations_total",
            &[("operation", "keygen"), ("outcome", "ok")]
        ),
        1.0
    );
    for port in &signer_ports {
        let s = scrape(*port);
        assert_eq!(
            value(
                &s,
                "ringi_signer_key_operations_total",
                &[("operation", "dkg"), ("outcome", "ok")]
            ),
            1.0,
            "{s}"
        );
        assert_eq!(
            value(
                &s,
                "ringi_signer_rpcs_total",
                &[("rpc", "DkgFinish"), ("outcome", "ok")]
            ),
            1.0
        );
        // The share was sealed in the token and its object created.
        for op in ["seal", "store_share", "ecdh"] {
            assert!(
                value(
                    &s,
                    "ringi_signer_token_operation_duration_seconds_count",
                    &[("op", op)]
                ) >= 1.0,
                "{op}: {s}"
            );
        }
    }
    // The coordinator sees both signers up (its health watches).
    for name in ["signer-1", "signer-2"] {
        assert_eq!(
            value(&keygen, "ringi_signer_up", &[("signer", name)]),
            1.0,
            "{keygen}"
        );
    }

    // Refusals: a request for a key with no record, and an approval in a
    // department its approver is not in.
    let before = scrape(coordinator_port);
    let signers_before: Vec<String> = signer_ports.iter().map(|p| scrape(*p)).collect();
    let out = cluster.try_submit("cold-1", &[]);
    assert!(!out.status.success());
    let message = b"metrics: one signing";
    let id = cluster.submit("hot-1", message, 1000, "wallet-service", &[]);
    let out = cluster.approve(&id, "alice", "compliance");
    assert!(!out.status.success(), "alice is not in compliance");
    for (who, department) in [("alice", "treasury"), ("carol", "compliance")] {
        let out = cluster.approve(&id, who, department);
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(cluster.wait_signed(&id).len(), 65);
    let after = scrape(coordinator_port);
    let signers_after: Vec<String> = signer_ports.iter().map(|p| scrape(*p)).collect();

    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    for state in ["pending_approval", "approved", "signing", "signed"] {
        assert_eq!(
            d("ringi_request_transitions_total", &[("to", state)]),
            1.0,
            "{state}: {after}"
        );
    }
    for state in ["rejected", "expired", "failed"] {
        assert_eq!(d("ringi_request_transitions_total", &[("to", state)]), 0.0);
    }
    assert_eq!(
        d("ringi_approvals_recorded_total", &[("decision", "approve")]),
        2.0
    );
    assert_eq!(
        d(
            "ringi_refusals_total",
            &[("rpc", "SubmitSigningRequest"), ("reason", "not_found")]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        d(
            "ringi_refusals_total",
            &[("rpc", "Decide"), ("reason", "wrong_department")]
        ),
        1.0,
        "{after}"
    );
    let phase = |p: &str| {
        d(
            "ringi_signing_phase_duration_seconds_count",
            &[("phase", p)],
        )
    };
    for p in ["queue", "round2", "aggregate", "plan_write", "commit_write"] {
        assert_eq!(phase(p), 1.0, "{p}: {after}");
    }
    // Round 1 ran live only if the signers had no preprocessed
    // commitments for this key yet.
    let one_round = d(
        "ringi_signing_events_total",
        &[("event", "signings_one_round")],
    );
    let two_round = d(
        "ringi_signing_events_total",
        &[("event", "signings_two_round")],
    );
    assert_eq!(one_round + two_round, 1.0, "{after}");
    // A request just approved: claimed with its first round-2 plan, in one
    // store write.
    assert_eq!(
        d(
            "ringi_signing_events_total",
            &[("event", "claims_with_first_plan")]
        ),
        1.0,
        "{after}"
    );
    assert_eq!(phase("round1"), two_round);
    // The histogram is a real Prometheus histogram: buckets, sum, count.
    assert!(
        after.contains("ringi_signing_phase_duration_seconds_bucket{phase=\"round2\",le=\"+Inf\"}"),
        "{after}"
    );

    for (node, (b, a)) in signers_before.iter().zip(&signers_after).enumerate() {
        let d = |name: &str, labels: &[(&str, &str)]| delta(b, a, name, labels);
        assert_eq!(
            d(
                "ringi_signer_rpcs_total",
                &[("rpc", "Sign"), ("outcome", "ok")]
            ),
            1.0,
            "signer {node}: {a}"
        );
        assert_eq!(
            d(
                "ringi_signer_rpc_duration_seconds_count",
                &[("rpc", "Sign")]
            ),
            1.0
        );
        assert_eq!(
            d(
                "ringi_signer_rpcs_total",
                &[("rpc", "Commit"), ("outcome", "ok")]
            ),
            two_round
        );
        assert!(
            d(
                "ringi_signer_token_operation_duration_seconds_count",
                &[("op", "unseal")]
            ) >= 1.0,
            "signer {node}: {a}"
        );
        assert!(a.contains("ringi_signer_nonces_waiting{pool="), "{a}");
        assert!(value(a, "ringi_signer_nonces_waiting", &[("pool", "round1")]) >= 0.0);
    }

    // Nothing from a request or a secret in any label.
    let pin = cluster.signers[0].pin();
    for text in std::iter::once(&after).chain(&signers_after) {
        for secret in [
            "hot-1",
            "cold-1",
            id.as_str(),
            &hex::encode(message),
            "wallet-service",
            "alice",
            pin.as_str(),
        ] {
            assert!(!text.contains(secret), "{secret:?} in a scrape:\n{text}");
        }
    }

    // Logs: the coordinator's (config) and signer-1's (flag) are JSON
    // lines; signer-2's are text, without colours in a file.
    let coordinator_log =
        std::fs::read_to_string(cluster.dir.path().join("coordinator.log")).unwrap();
    assert!(json_lines(&coordinator_log) > 3, "{coordinator_log}");
    assert!(coordinator_log.contains("\"message\":\"request signed\""));
    assert!(coordinator_log.contains("metrics endpoint listening"));
    let signer_log = std::fs::read_to_string(cluster.signers[0].dir.join("log")).unwrap();
    assert!(json_lines(&signer_log) > 3, "{signer_log}");
    let text_log = std::fs::read_to_string(cluster.signers[1].dir.join("log")).unwrap();
    assert!(text_log.contains("token opened"), "{text_log}");
    for log in [&coordinator_log, &signer_log, &text_log] {
        assert!(!log.contains('\u{1b}'), "ANSI escape in a log file");
        assert!(!log.contains(pin.as_str()), "a PIN in a log");
    }

    // A signer that stops is seen down.
    cluster.signers[1].stop();
    let mut down = String::new();
    for _ in 0..100 {
        down = scrape(coordinator_port);
        if value(&down, "ringi_signer_up", &[("signer", "signer-2")]) == 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        value(&down, "ringi_signer_up", &[("signer", "signer-2")]),
        0.0,
        "{down}"
    );
    assert_eq!(
        value(&down, "ringi_signer_up", &[("signer", "signer-1")]),
        1.0
    );
}
