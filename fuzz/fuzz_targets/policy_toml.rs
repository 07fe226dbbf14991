//! The policy file parser: any bytes give a policy or an error, never a
//! panic; a policy that loads answers every query.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = ringi_policy::policy::Policy::from_bytes(data) {
        let _ = policy.hash();
        let _ = policy.approvers();
        for amount in [0u128, 1, u64::MAX as u128, u128::MAX] {
            if let Some(rules) = policy.key("k") {
                let _ = rules.amount_quorums(amount);
                let _ = rules.quorums_for(amount, "bc1qexample");
            }
        }
    }
});
