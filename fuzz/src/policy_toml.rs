//! The policy file parser (`Policy::from_bytes`): a signer pins the file an
//! operator hands it, the coordinator loads it.
//!
//! Reaches: TOML syntax; the schema (`deny_unknown_fields`); approver key
//! parsing; departments and roster uniqueness; per-key rules (TTLs,
//! quorums naming known departments, quorums not above a department's size,
//! tiers increasing and not weaker, limits, destinations); then, for a
//! policy that loads, every query the rules make (`amount_quorums`,
//! `quorums_for`, `hash`, `approvers`). The seeds are policies that load.

crate::stages!(
    /// How far an input got.
    Reached {
        /// Not UTF-8 or not TOML or not a valid policy.
        Refused,
        /// Loaded, and every query answered.
        Loaded,
    }
);

pub fn run(data: &[u8]) -> Reached {
    let Ok(policy) = ringi_policy::policy::Policy::from_bytes(data) else {
        return Reached::Refused;
    };
    let _ = policy.hash();
    let _ = policy.approvers();
    for key_id in [crate::harness_keys::KEY_ID, "hot-1", "cold-1", "btc-hot"] {
        if let Some(rules) = policy.key(key_id) {
            for amount in [0u128, 1, 100_000_000, u64::MAX as u128, u128::MAX] {
                let _ = rules.amount_quorums(amount);
                let _ = rules.quorums_for(amount, crate::harness_keys::ALLOWED_DESTINATION);
                let _ = rules.quorums_for(amount, "elsewhere");
            }
        }
    }
    Reached::Loaded
}

/// Policies that load: the harness policy, and the ones the project ships.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![crate::harness_keys::policy_text().into_bytes()];
    let minimal = "version = 1\n[[departments]]\nname = \"t\"\napprovers = [{ name = \"a\", key = \"p256:036b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\" }]\n[keys.k]\nrequest_ttl_secs = 10\napproval_ttl_secs = 10\nrequire = { t = 1 }\n";
    seeds.push(minimal.as_bytes().to_vec());
    seeds.push(
        minimal
            .replace("require = { t = 1 }", "separation_of_duties = false\nrequire = { t = 1 }\n[keys.k.destinations]\nallowed = [\"d\"]")
            .into_bytes(),
    );
    seeds
}
