//! Key order files (`ringi_cli::key_order::OrderFile`): the JSON an admin
//! is handed to sign (`ringi keys order sign`) and an operator delivers
//! (`ringi keys retire|refresh|repair --order`), made by another party.
//!
//! Reaches: UTF-8 and JSON syntax; the schema (`deny_unknown_fields`);
//! each action's own fields (a retirement's grace period, a repair's
//! identifier, recipient and helpers, a refresh with neither); the hex of
//! keys and signatures; the order as the signers decode it
//! (`ringi_proto::key_order::order_from_pb`: transport keys of either
//! curve, SEC1 or SubjectPublicKeyInfo). Then, for a file that parses: the
//! description an admin reads before signing (`describe`), and the file
//! written back and read again, which must give the same order (what
//! `ringi keys order sign` does to it). The seeds are orders of every
//! action, repairs on both curves, one signed by an admin.

use ringi_cli::approver::ApproverSigner;
use ringi_cli::key_order::{
    OrderFile, add_signature, describe, refresh_order, repair_order, retire_order,
};
use ringi_policy::transport_key::TransportCurve;

crate::stages!(
    /// How far an input got.
    Reached {
        /// Not UTF-8, not JSON, or not a valid order.
        Refused,
        /// Parsed, described, written back and read again unchanged.
        RoundTrips,
    }
);

pub fn run(data: &[u8]) -> Reached {
    let Ok(text) = std::str::from_utf8(data) else {
        return Reached::Refused;
    };
    let Ok(signed) = OrderFile::parse(text).and_then(|f| f.to_signed()) else {
        return Reached::Refused;
    };
    let _ = describe(&signed, Some(&crate::harness_keys::POLICY), 0);
    let written = serde_json::to_string(&OrderFile::from_signed(&signed))
        .expect("a parsed order file encodes");
    let read = OrderFile::parse(&written)
        .and_then(|f| f.to_signed())
        .expect("an order file written back parses");
    assert_eq!(read, signed, "an order file changed when written back");
    Reached::RoundTrips
}

const NOW: u64 = 1_900_000_000;

/// Orders of every action, as `ringi keys order ...` prints them.
pub fn seeds() -> Vec<Vec<u8>> {
    let secp = |b: u8| format!("02{}", hex::encode([b; 32]));
    let p256 = |b: u8| {
        let point = hex::decode(secp(b)).expect("hex");
        hex::encode(TransportCurve::P256.wire(&point))
    };
    let mut orders = vec![
        retire_order("hot-1", 30, 3600, NOW).expect("a retirement"),
        refresh_order("hot-1", 3600, NOW).expect("a refresh"),
        repair_order("hot-1", 1, &secp(1), &[format!("2={}", secp(2))], 600, NOW)
            .expect("a repair on secp256k1"),
        repair_order(
            "hot-1",
            1,
            &p256(1),
            &[format!("2={}", p256(2)), format!("3={}", p256(3))],
            600,
            NOW,
        )
        .expect("a repair on P-256"),
    ];
    let admin = ApproverSigner::File(crate::harness_keys::approver(0).0);
    let signed =
        add_signature(orders[0].clone(), &admin, NOW + 1).expect("an admin signs the retirement");
    orders.push(signed);
    orders
        .iter()
        .map(|o| {
            serde_json::to_string_pretty(&OrderFile::from_signed(o))
                .expect("an order encodes")
                .into_bytes()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_round_trips_and_broken_files_are_refused() {
        let seeds = seeds();
        for seed in &seeds {
            assert_eq!(run(seed), Reached::RoundTrips);
        }
        let repair = String::from_utf8(seeds[3].clone()).unwrap();
        let helper = repair.split("transport_key\": \"").nth(1).unwrap();
        let helper = &helper[..helper.find('"').unwrap()];
        for broken in [
            String::new(),
            "{}".into(),
            "\u{ff}".into(),
            repair.replace("\"key_id\"", "\"key\""),
            repair.replace(helper, "zz"),
        ] {
            assert_eq!(run(broken.as_bytes()), Reached::Refused, "{broken}");
        }
        // Keys on two curves are a rule of the order, which the coordinator
        // and every node check against their policy (`check_order`), not of
        // the file: it parses, and reads back unchanged.
        let mixed = repair.replace(helper, &format!("02{}", "ab".repeat(32)));
        assert_eq!(run(mixed.as_bytes()), Reached::RoundTrips);
        // Every byte of a signed order flipped in turn: refused or equal to
        // itself written back, never a panic.
        let signed = &seeds[4];
        for i in 0..signed.len() {
            let mut flipped = signed.clone();
            flipped[i] ^= 0x01;
            run(&flipped);
        }
    }
}
