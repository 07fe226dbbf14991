//! The approval policy: departments and their approvers, and per key id the
//! quorums each department must reach, stricter above amount thresholds.
//!
//! ```toml
//! version = 1
//!
//! [[departments]]
//! name = "treasury"
//! approvers = [
//!   { name = "alice", key = "p256:03ab..." },
//!   { name = "bob",   key = "p256:02cd..." },
//! ]
//!
//! [keys.hot-1]
//! request_ttl_secs = 86400     # a request expires after at most this long
//! approval_ttl_secs = 3600     # each approval is valid for at most this long
//! # separation_of_duties = true  (default; set false only deliberately)
//! require = { treasury = 1, compliance = 1 }
//! tiers = [
//!   { above = 100000000, require = { treasury = 2, compliance = 1, security = 1 } },
//! ]
//!
//! # A bitcoin-taproot key: its network, fee caps, and whether raw
//! # (blind) messages may be signed at all, and under which quorum.
//! [keys.btc-1]
//! request_ttl_secs = 86400
//! approval_ttl_secs = 3600
//! require = { treasury = 1, compliance = 1 }
//! network = "regtest"          # bitcoin | testnet | signet | regtest
//! fees = { max_sats = 50000, max_sat_per_vbyte = 200 }
//! # allow_sighash_all = false  (SIGHASH_DEFAULT only, the default)
//! # blind_signing = { require = { security = 1, treasury = 2 } }
//! ```
//!
//! A rule names how many distinct approvers of each department must approve
//! (AND across departments). A tier applies when the request's amount is
//! strictly above its `above`; the highest matching tier wins, and every tier
//! must be at least as strict as the rule below it.
//!
//! Loading refuses, with a precise [`PolicyError`]: a quorum of 0, an empty
//! rule, a department or approver unknown or duplicated, a key listed twice
//! (one person counts for one department), a quorum larger than its
//! department, tiers that are not increasing or not stricter, zero TTLs.
//!
//! The policy's identity is the SHA-256 of the file's bytes: signers pin it,
//! and every request names it. A new version replaces it only under the
//! current version's admin quorum (`crate::policy_update`).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::approver_key::ApproverKey;
use crate::encoding::sha256;
use crate::limits::Limits;
use crate::time_rules::{SigningHours, TimeRules};

pub const POLICY_VERSION: u32 = 1;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy is not valid TOML for this format: {0}")]
    Syntax(String),
    #[error("policy version {0} is not supported (this ringi reads version {POLICY_VERSION})")]
    UnsupportedVersion(u32),
    #[error("department {0:?} is defined twice")]
    DuplicateDepartment(String),
    #[error("department {0:?} has no approvers")]
    EmptyDepartment(String),
    #[error("approver {approver:?} in department {department:?}: {reason}")]
    BadApproverKey {
        department: String,
        approver: String,
        reason: String,
    },
    #[error("approver name {0:?} is used twice")]
    DuplicateApproverName(String),
    #[error(
        "the key of approver {second:?} ({second_department}) is also the key of {first:?} ({first_department}): one person counts for one department"
    )]
    DuplicateApproverKey {
        first: String,
        first_department: String,
        second: String,
        second_department: String,
    },
    #[error("key id {0:?} is not a valid key id")]
    BadKeyId(String),
    #[error("key {key_id:?}: {rule} requires no department at all")]
    EmptyRule { key_id: String, rule: String },
    #[error(
        "key {key_id:?}: {rule} sets a quorum of 0 for department {department:?}; a quorum must be at least 1"
    )]
    ZeroQuorum {
        key_id: String,
        rule: String,
        department: String,
    },
    #[error("key {key_id:?}: {rule} names unknown department {department:?}")]
    UnknownDepartment {
        key_id: String,
        rule: String,
        department: String,
    },
    #[error(
        "key {key_id:?}: {rule} needs {need} approvers from {department:?}, which has only {have}"
    )]
    QuorumTooLarge {
        key_id: String,
        rule: String,
        department: String,
        need: u32,
        have: usize,
    },
    #[error("key {key_id:?}: tier thresholds must be strictly increasing")]
    TiersNotIncreasing { key_id: String },
    #[error(
        "key {key_id:?}: {rule} is less strict than the rule below it for department {department:?}"
    )]
    TierNotStricter {
        key_id: String,
        rule: String,
        department: String,
    },
    #[error("key {key_id:?}: {field} must be at least 1 second")]
    ZeroTtl { key_id: String, field: &'static str },
    #[error("key {key_id:?}: limits: {reason}")]
    BadLimits { key_id: String, reason: String },
    #[error("key {key_id:?}: destinations: {reason}")]
    BadDestinations { key_id: String, reason: String },
    #[error("key {key_id:?}: network {network:?} is not one of bitcoin, testnet, signet, regtest")]
    UnknownNetwork { key_id: String, network: String },
    #[error("key {key_id:?}: fees: {reason}")]
    BadFees { key_id: String, reason: String },
    #[error("key {key_id:?}: time: {reason}")]
    BadTimeRules { key_id: String, reason: String },
    #[error("requester {requester:?}: {reason}")]
    BadRequester { requester: String, reason: String },
    #[error("governance: freeze officer {0:?} is not an approver of the policy")]
    UnknownOfficer(String),
    #[error("governance: {0}")]
    BadGovernance(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    /// The policy's place in its update chain (`crate::policy_update`):
    /// each update is exactly one more than the policy it replaces.
    #[serde(default)]
    sequence: u64,
    #[serde(default)]
    departments: Vec<DepartmentFile>,
    #[serde(default)]
    keys: BTreeMap<String, KeyFile>,
    #[serde(default)]
    governance: Option<GovernanceFile>,
    #[serde(default)]
    requesters: Vec<ApproverFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GovernanceFile {
    #[serde(default)]
    freeze_officers: Vec<String>,
    unfreeze: Option<BTreeMap<String, u32>>,
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    admin_quorum: u32,
    #[serde(default)]
    loosening_delay_secs: u64,
    #[serde(default)]
    pending_requests: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepartmentFile {
    name: String,
    approvers: Vec<ApproverFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproverFile {
    name: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    request_ttl_secs: u64,
    approval_ttl_secs: u64,
    #[serde(default = "default_true")]
    separation_of_duties: bool,
    require: BTreeMap<String, u32>,
    #[serde(default)]
    tiers: Vec<TierFile>,
    #[serde(default)]
    limits: Option<LimitsFile>,
    #[serde(default)]
    destinations: Option<DestinationsFile>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    fees: Option<FeesFile>,
    #[serde(default)]
    allow_sighash_all: bool,
    #[serde(default)]
    blind_signing: Option<BlindSigningFile>,
    #[serde(default)]
    time: Option<TimeFile>,
    #[serde(default)]
    signed_requests: bool,
    #[serde(default)]
    refresh_needs_order: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeFile {
    signing_hours: Option<SigningHoursFile>,
    #[serde(default)]
    delay_secs: u64,
    #[serde(default)]
    delays: Vec<DelayFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningHoursFile {
    days: Vec<String>,
    from: String,
    to: String,
    utc_offset: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayFile {
    above: u128,
    delay_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeesFile {
    max_sats: Option<u64>,
    max_sat_per_vbyte: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlindSigningFile {
    require: BTreeMap<String, u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_amount_per_request: Option<u128>,
    #[serde(default)]
    window_secs: u64,
    max_amount_per_window: Option<u128>,
    max_requests_per_window: Option<u64>,
    max_window_percent_of_daily_volume: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationsFile {
    allowed: Vec<String>,
    /// Departments (and quorums) that must approve in addition when the
    /// destination is not listed. Absent: unlisted destinations are refused.
    unlisted_require: Option<BTreeMap<String, u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFile {
    above: u128,
    require: BTreeMap<String, u32>,
}

fn default_true() -> bool {
    true
}

/// One approver: a person with a key, in exactly one department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    pub name: String,
    pub department: String,
    pub key: ApproverKey,
}

/// Department name → number of distinct approvers required.
pub type Quorums = BTreeMap<String, u32>;

/// A destination allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destinations {
    pub allowed: std::collections::BTreeSet<String>,
    /// Extra quorums for a destination not on the list; `None`: refused.
    pub unlisted_require: Option<Quorums>,
}

/// The rules of one key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRules {
    pub request_ttl_secs: u64,
    pub approval_ttl_secs: u64,
    pub separation_of_duties: bool,
    pub base: Quorums,
    /// (above, quorums), increasing by `above`.
    pub tiers: Vec<(u128, Quorums)>,
    /// Spending caps (see [`crate::limits`]).
    pub limits: Limits,
    /// Destination allowlist, if any.
    pub destinations: Option<Destinations>,
    /// A bitcoin-taproot key's network, fee caps and sighash types.
    pub bitcoin: BitcoinRules,
    /// The quorum under which a raw message may be signed by a
    /// bitcoin-taproot key (blind signing); `None`: never.
    pub blind_signing: Option<Quorums>,
    /// Signing hours and delays after full approval
    /// ([`crate::time_rules`]).
    pub time: TimeRules,
    /// Every request must carry its requester's signature (a `request`
    /// statement by a key of the policy's `requesters`, whose name is the
    /// request's requester): who asked is proven, not the coordinator's word.
    pub signed_requests: bool,
    /// A refresh of the key's shares needs a refresh order signed by the
    /// policy's admin quorum (`crate::key_order`), checked by every signer;
    /// without it a refresh is an admin's call alone (it changes no one's
    /// power to sign).
    pub refresh_needs_order: bool,
}

/// What a PSBT request on a key may do beyond its quorums and caps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitcoinRules {
    /// The network its addresses are on; PSBT requests need one.
    pub network: Option<ringi_psbt::Network>,
    /// Largest fee, in satoshis.
    pub max_fee_sats: Option<u64>,
    /// Largest fee rate, in sat/vB (of the signed transaction).
    pub max_fee_rate: Option<u64>,
    /// SIGHASH_ALL besides SIGHASH_DEFAULT.
    pub allow_sighash_all: bool,
}

impl KeyRules {
    /// The quorums for `amount`: the highest tier whose `above` is below it,
    /// or the base rule.
    pub fn amount_quorums(&self, amount: u128) -> &Quorums {
        self.tiers
            .iter()
            .rev()
            .find(|(above, _)| amount > *above)
            .map(|(_, q)| q)
            .unwrap_or(&self.base)
    }

    /// The quorums a request of `amount` to `destination` needs, or `None`
    /// if the allowlist refuses the destination outright.
    pub fn quorums_for(&self, amount: u128, destination: &str) -> Option<Quorums> {
        self.quorums_for_all(amount, std::slice::from_ref(&destination))
            .ok()
    }

    /// The quorums a request paying `amount` in all to every one of
    /// `destinations` needs; `Err(destination)` names the first destination
    /// the allowlist refuses outright.
    pub fn quorums_for_all<D: AsRef<str>>(
        &self,
        amount: u128,
        destinations: &[D],
    ) -> Result<Quorums, String> {
        let mut quorums = self.amount_quorums(amount).clone();
        let Some(list) = &self.destinations else {
            return Ok(quorums);
        };
        for destination in destinations {
            let destination = destination.as_ref();
            if list.allowed.contains(destination) {
                continue;
            }
            let extra = list
                .unlisted_require
                .as_ref()
                .ok_or_else(|| destination.to_string())?;
            for (department, need) in extra {
                let q = quorums.entry(department.clone()).or_insert(0);
                *q = (*q).max(*need);
            }
        }
        Ok(quorums)
    }
}

/// A loaded, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    hash: [u8; 32],
    approvers: Vec<Approver>,
    keys: BTreeMap<String, KeyRules>,
    governance: Governance,
    requesters: Vec<Requester>,
    sequence: u64,
}

/// A wallet service that signs the requests it makes (`[[requesters]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// As the request's `requester` (under mutual TLS: the name in the
    /// wallet's certificate).
    pub name: String,
    pub key: ApproverKey,
}

/// Who may stop signing without the coordinator (`crate::freeze`): the
/// officers who may freeze a key or every key alone, and the quorum that
/// lifts a freeze. Empty (no `[governance]` section): nobody can freeze;
/// direct rejections (`crate::veto`) need no section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Governance {
    /// Approver names; each may freeze on their own.
    pub freeze_officers: Vec<String>,
    /// Distinct approvers per department needed to lift a freeze; at least
    /// two people in all, so no one person can undo a freeze.
    pub unfreeze: Quorums,
    /// Approver names who may sign a policy update
    /// (`crate::policy_update`); empty: the policy cannot be updated, only
    /// re-pinned by every operator.
    pub admins: Vec<String>,
    /// How many distinct admins must sign an update (at least 2).
    pub admin_quorum: u32,
    /// How long after its quorum a loosening update waits before it takes
    /// effect (a tightening takes effect at once).
    pub loosening_delay_secs: u64,
    /// What becomes of requests made under this policy once an update
    /// takes effect.
    pub pending_requests: PendingRequests,
}

/// What becomes of the requests made under a policy once an update to it
/// takes effect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PendingRequests {
    /// They must be made and approved again under the new policy: signers
    /// refuse them, the coordinator fails them with that reason.
    #[default]
    Reapprove,
    /// They are judged under the policy they were made under until they
    /// expire.
    Keep,
}

impl Policy {
    /// Parses and validates a policy file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        if file.version != POLICY_VERSION {
            return Err(PolicyError::UnsupportedVersion(file.version));
        }
        let mut departments: HashMap<String, usize> = HashMap::new();
        let mut approvers: Vec<Approver> = Vec::new();
        for dept in file.departments {
            if departments.contains_key(&dept.name) {
                return Err(PolicyError::DuplicateDepartment(dept.name));
            }
            if dept.approvers.is_empty() {
                return Err(PolicyError::EmptyDepartment(dept.name));
            }
            departments.insert(dept.name.clone(), dept.approvers.len());
            for a in dept.approvers {
                let key = ApproverKey::parse(&a.key).map_err(|e| PolicyError::BadApproverKey {
                    department: dept.name.clone(),
                    approver: a.name.clone(),
                    reason: e.to_string(),
                })?;
                if let Some(first) = approvers.iter().find(|x| x.key == key) {
                    return Err(PolicyError::DuplicateApproverKey {
                        first: first.name.clone(),
                        first_department: first.department.clone(),
                        second: a.name,
                        second_department: dept.name.clone(),
                    });
                }
                if approvers.iter().any(|x| x.name == a.name) {
                    return Err(PolicyError::DuplicateApproverName(a.name));
                }
                approvers.push(Approver {
                    name: a.name,
                    department: dept.name.clone(),
                    key,
                });
            }
        }
        let mut keys = BTreeMap::new();
        for (key_id, k) in file.keys {
            if crate::key_id::check_name(&key_id).is_err() {
                return Err(PolicyError::BadKeyId(key_id));
            }
            for (field, value) in [
                ("request_ttl_secs", k.request_ttl_secs),
                ("approval_ttl_secs", k.approval_ttl_secs),
            ] {
                if value == 0 {
                    return Err(PolicyError::ZeroTtl { key_id, field });
                }
            }
            check_rule(&key_id, "the base rule", &k.require, &departments)?;
            let mut below = &k.require;
            let mut last_above: Option<u128> = None;
            for tier in &k.tiers {
                let rule = format!("the tier above {}", tier.above);
                check_rule(&key_id, &rule, &tier.require, &departments)?;
                if last_above.is_some_and(|prev| tier.above <= prev) {
                    return Err(PolicyError::TiersNotIncreasing { key_id });
                }
                for (department, need) in below {
                    if tier.require.get(department).is_none_or(|n| n < need) {
                        return Err(PolicyError::TierNotStricter {
                            key_id,
                            rule,
                            department: department.clone(),
                        });
                    }
                }
                last_above = Some(tier.above);
                below = &tier.require;
            }
            let limits = match &k.limits {
                Some(l) => check_limits(&key_id, l)?,
                None => Limits::default(),
            };
            let destinations = match &k.destinations {
                Some(d) => {
                    if d.allowed.is_empty() {
                        return Err(PolicyError::BadDestinations {
                            key_id,
                            reason: "the allowlist is empty".into(),
                        });
                    }
                    if let Some(extra) = &d.unlisted_require {
                        check_rule(
                            &key_id,
                            "destinations.unlisted_require",
                            extra,
                            &departments,
                        )?;
                    }
                    Some(Destinations {
                        allowed: d.allowed.iter().cloned().collect(),
                        unlisted_require: d.unlisted_require.clone(),
                    })
                }
                None => None,
            };
            let bitcoin = check_bitcoin(&key_id, &k)?;
            if let Some(b) = &k.blind_signing {
                check_rule(&key_id, "blind_signing", &b.require, &departments)?;
            }
            let time = match &k.time {
                Some(t) => check_time(&key_id, t, k.approval_ttl_secs)?,
                None => TimeRules::default(),
            };
            keys.insert(
                key_id,
                KeyRules {
                    request_ttl_secs: k.request_ttl_secs,
                    approval_ttl_secs: k.approval_ttl_secs,
                    separation_of_duties: k.separation_of_duties,
                    base: k.require.clone(),
                    tiers: k.tiers.into_iter().map(|t| (t.above, t.require)).collect(),
                    limits,
                    destinations,
                    bitcoin,
                    blind_signing: k.blind_signing.map(|b| b.require),
                    time,
                    signed_requests: k.signed_requests,
                    refresh_needs_order: k.refresh_needs_order,
                },
            );
        }
        let mut requesters: Vec<Requester> = Vec::new();
        for r in file.requesters {
            let key = ApproverKey::parse(&r.key).map_err(|e| PolicyError::BadRequester {
                requester: r.name.clone(),
                reason: e.to_string(),
            })?;
            if let Some(a) = approvers.iter().find(|a| a.key == key) {
                return Err(PolicyError::BadRequester {
                    requester: r.name,
                    reason: format!(
                        "its key is also the key of approver {:?}: one key, one role",
                        a.name
                    ),
                });
            }
            if requesters.iter().any(|x| x.name == r.name || x.key == key) {
                return Err(PolicyError::BadRequester {
                    requester: r.name,
                    reason: "named twice, or its key is another requester's".into(),
                });
            }
            requesters.push(Requester { name: r.name, key });
        }
        if requesters.is_empty()
            && let Some(k) = keys
                .iter()
                .find(|(_, k): &(&String, &KeyRules)| k.signed_requests)
        {
            return Err(PolicyError::BadRequester {
                requester: String::new(),
                reason: format!(
                    "key {:?} sets signed_requests but the policy names no [[requesters]]",
                    k.0
                ),
            });
        }
        let governance = match file.governance {
            Some(g) => check_governance(g, &approvers, &departments)?,
            None => Governance::default(),
        };
        if governance.admins.is_empty()
            && let Some((key_id, _)) = keys
                .iter()
                .find(|(_, k): &(&String, &KeyRules)| k.refresh_needs_order)
        {
            return Err(PolicyError::BadGovernance(format!(
                "key {key_id:?} sets refresh_needs_order but [governance] names no admins to sign one"
            )));
        }
        Ok(Policy {
            hash: sha256(bytes),
            approvers,
            keys,
            governance,
            requesters,
            sequence: file.sequence,
        })
    }

    /// SHA-256 of the policy file.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    pub fn key(&self, key_id: &str) -> Option<&KeyRules> {
        self.keys.get(key_id)
    }

    /// The approver holding `key`, if any.
    pub fn approver(&self, key: &ApproverKey) -> Option<&Approver> {
        self.approvers.iter().find(|a| &a.key == key)
    }

    pub fn approvers(&self) -> &[Approver] {
        &self.approvers
    }

    /// The policy's place in its update chain.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The approver named `name`, if any.
    pub fn approver_named(&self, name: &str) -> Option<&Approver> {
        self.approvers.iter().find(|a| a.name == name)
    }

    /// The requesters of the policy.
    pub fn requesters(&self) -> &[Requester] {
        &self.requesters
    }

    /// Every key id with rules, and its rules.
    pub fn keys(&self) -> impl Iterator<Item = (&String, &KeyRules)> {
        self.keys.iter()
    }

    /// The requester holding `key`, if any.
    pub fn requester(&self, key: &ApproverKey) -> Option<&Requester> {
        self.requesters.iter().find(|r| &r.key == key)
    }

    pub fn governance(&self) -> &Governance {
        &self.governance
    }
}

/// Validates a key's `time` table: valid hours; delays increasing in
/// `above` and in length; every delay shorter than the approvals' lifetime
/// (else no request could ever be signed).
fn check_time(key_id: &str, t: &TimeFile, approval_ttl: u64) -> Result<TimeRules, PolicyError> {
    let bad = |reason: String| PolicyError::BadTimeRules {
        key_id: key_id.to_string(),
        reason,
    };
    let signing_hours = match &t.signing_hours {
        Some(h) => Some(SigningHours::parse(&h.days, &h.from, &h.to, &h.utc_offset).map_err(bad)?),
        None => None,
    };
    let mut last: Option<(u128, u64)> = None;
    for d in &t.delays {
        if let Some((above, delay)) = last
            && (d.above <= above || d.delay_secs < delay)
        {
            return Err(bad("delays must increase in `above` and not shorten".into()));
        }
        last = Some((d.above, d.delay_secs));
    }
    for delay in t.delays.iter().map(|d| d.delay_secs).chain([t.delay_secs]) {
        if delay >= approval_ttl {
            return Err(bad(format!(
                "a delay of {delay} s is not shorter than approval_ttl_secs ({approval_ttl} s): approvals would expire before it ends"
            )));
        }
    }
    if t.delays
        .first()
        .is_some_and(|d| d.delay_secs < t.delay_secs)
    {
        return Err(bad(
            "a delay above an amount may not be shorter than delay_secs".into(),
        ));
    }
    Ok(TimeRules {
        signing_hours,
        delay_secs: t.delay_secs,
        delays: t.delays.iter().map(|d| (d.above, d.delay_secs)).collect(),
    })
}

/// Validates the `[governance]` section: officers are approvers of the
/// roster; the unfreeze quorum names known departments, within their size,
/// and at least two people (one officer freezes alone, one person must not
/// be able to lift it).
fn check_governance(
    g: GovernanceFile,
    approvers: &[Approver],
    departments: &HashMap<String, usize>,
) -> Result<Governance, PolicyError> {
    for officer in &g.freeze_officers {
        if !approvers.iter().any(|a| &a.name == officer) {
            return Err(PolicyError::UnknownOfficer(officer.clone()));
        }
    }
    let unfreeze = match g.unfreeze {
        Some(q) => q,
        None if g.freeze_officers.is_empty() => BTreeMap::new(),
        None => {
            return Err(PolicyError::BadGovernance(
                "freeze_officers are named but no unfreeze quorum: a freeze could never be lifted"
                    .into(),
            ));
        }
    };
    if !unfreeze.is_empty() {
        check_rule("governance", "unfreeze", &unfreeze, departments)?;
        let people: u32 = unfreeze.values().sum();
        if people < 2 {
            return Err(PolicyError::BadGovernance(
                "the unfreeze quorum must need at least two approvers: one person may not lift a freeze".into(),
            ));
        }
    }
    for admin in &g.admins {
        if !approvers.iter().any(|a| &a.name == admin) {
            return Err(PolicyError::BadGovernance(format!(
                "admin {admin:?} is not an approver of the policy"
            )));
        }
    }
    let distinct: std::collections::BTreeSet<&String> = g.admins.iter().collect();
    if distinct.len() != g.admins.len() {
        return Err(PolicyError::BadGovernance("an admin is named twice".into()));
    }
    if !g.admins.is_empty() && (g.admin_quorum < 2 || g.admin_quorum as usize > g.admins.len()) {
        return Err(PolicyError::BadGovernance(format!(
            "admin_quorum must be at least 2 and at most the {} admins (got {})",
            g.admins.len(),
            g.admin_quorum
        )));
    }
    let pending_requests = match g.pending_requests.as_deref() {
        None | Some("re-approve") => PendingRequests::Reapprove,
        Some("keep") => PendingRequests::Keep,
        Some(other) => {
            return Err(PolicyError::BadGovernance(format!(
                "pending_requests {other:?} is neither \"re-approve\" nor \"keep\""
            )));
        }
    };
    Ok(Governance {
        freeze_officers: g.freeze_officers,
        unfreeze,
        admins: g.admins,
        admin_quorum: g.admin_quorum,
        loosening_delay_secs: g.loosening_delay_secs,
        pending_requests,
    })
}

fn check_limits(key_id: &str, l: &LimitsFile) -> Result<Limits, PolicyError> {
    let bad = |reason: String| PolicyError::BadLimits {
        key_id: key_id.to_string(),
        reason,
    };
    let bps = match l.max_window_percent_of_daily_volume {
        Some(p) if p.is_finite() && p > 0.0 && p <= 100.0 => Some((p * 100.0).round() as u32),
        Some(p) => {
            return Err(bad(format!(
                "max_window_percent_of_daily_volume {p} is not in (0, 100]"
            )));
        }
        None => None,
    };
    let limits = Limits {
        max_amount_per_request: l.max_amount_per_request,
        window_secs: l.window_secs,
        max_amount_per_window: l.max_amount_per_window,
        max_requests_per_window: l.max_requests_per_window,
        window_bps_of_daily_volume: bps,
    };
    if limits.has_window() && limits.window_secs == 0 {
        return Err(bad("a window cap needs window_secs of at least 1".into()));
    }
    if !limits.has_window() && limits.window_secs != 0 {
        return Err(bad("window_secs is set but no window cap is".into()));
    }
    if limits.max_amount_per_request == Some(0)
        || limits.max_amount_per_window == Some(0)
        || limits.max_requests_per_window == Some(0)
    {
        return Err(bad(
            "a cap of 0 would refuse everything; remove the key instead".into(),
        ));
    }
    Ok(limits)
}

fn check_bitcoin(key_id: &str, k: &KeyFile) -> Result<BitcoinRules, PolicyError> {
    let network =
        match &k.network {
            Some(name) => Some(ringi_psbt::Network::parse(name).ok_or_else(|| {
                PolicyError::UnknownNetwork {
                    key_id: key_id.to_string(),
                    network: name.clone(),
                }
            })?),
            None => None,
        };
    let (max_fee_sats, max_fee_rate) = match &k.fees {
        Some(f) => {
            if f.max_sats == Some(0) || f.max_sat_per_vbyte == Some(0) {
                return Err(PolicyError::BadFees {
                    key_id: key_id.to_string(),
                    reason: "a fee cap of 0 would refuse every transaction".into(),
                });
            }
            if f.max_sats.is_none() && f.max_sat_per_vbyte.is_none() {
                return Err(PolicyError::BadFees {
                    key_id: key_id.to_string(),
                    reason: "set max_sats, max_sat_per_vbyte or both".into(),
                });
            }
            (f.max_sats, f.max_sat_per_vbyte)
        }
        None => (None, None),
    };
    Ok(BitcoinRules {
        network,
        max_fee_sats,
        max_fee_rate,
        allow_sighash_all: k.allow_sighash_all,
    })
}

fn check_rule(
    key_id: &str,
    rule: &str,
    require: &Quorums,
    departments: &HashMap<String, usize>,
) -> Result<(), PolicyError> {
    if require.is_empty() {
        return Err(PolicyError::EmptyRule {
            key_id: key_id.to_string(),
            rule: rule.to_string(),
        });
    }
    for (department, need) in require {
        let have = *departments
            .get(department)
            .ok_or_else(|| PolicyError::UnknownDepartment {
                key_id: key_id.to_string(),
                rule: rule.to_string(),
                department: department.clone(),
            })?;
        if *need == 0 {
            return Err(PolicyError::ZeroQuorum {
                key_id: key_id.to_string(),
                rule: rule.to_string(),
                department: department.clone(),
            });
        }
        if *need as usize > have {
            return Err(PolicyError::QuorumTooLarge {
                key_id: key_id.to_string(),
                rule: rule.to_string(),
                department: department.clone(),
                need: *need,
                have,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;

    pub struct Keys {
        pub signing: Vec<(String, SigningKey)>,
    }

    impl Keys {
        pub fn new(names: &[&str]) -> Self {
            Keys {
                signing: names
                    .iter()
                    .map(|n| (n.to_string(), SigningKey::random(&mut rand::rngs::OsRng)))
                    .collect(),
            }
        }

        pub fn public(&self, name: &str) -> String {
            let sk = &self.signing.iter().find(|(n, _)| n == name).unwrap().1;
            format!(
                "p256:{}",
                hex::encode(sk.verifying_key().to_encoded_point(true).as_bytes())
            )
        }

        pub fn secret(&self, name: &str) -> &SigningKey {
            &self.signing.iter().find(|(n, _)| n == name).unwrap().1
        }
    }

    /// treasury: alice, bob; compliance: carol, dave; security: erin.
    pub fn policy_text(keys: &Keys, key_section: &str) -> String {
        format!(
            r#"version = 1

[[departments]]
name = "treasury"
approvers = [{{ name = "alice", key = "{}" }}, {{ name = "bob", key = "{}" }}]

[[departments]]
name = "compliance"
approvers = [{{ name = "carol", key = "{}" }}, {{ name = "dave", key = "{}" }}]

[[departments]]
name = "security"
approvers = [{{ name = "erin", key = "{}" }}]

{key_section}
"#,
            keys.public("alice"),
            keys.public("bob"),
            keys.public("carol"),
            keys.public("dave"),
            keys.public("erin"),
        )
    }

    pub const HOT: &str = r#"[keys.hot-1]
request_ttl_secs = 86400
approval_ttl_secs = 3600
require = { treasury = 1, compliance = 1 }
tiers = [{ above = 100000000, require = { treasury = 2, compliance = 1, security = 1 } }]
"#;

    pub fn keys() -> Keys {
        Keys::new(&["alice", "bob", "carol", "dave", "erin", "mallory"])
    }

    fn refusal(keys: &Keys, section: &str) -> PolicyError {
        Policy::from_bytes(policy_text(keys, section).as_bytes()).unwrap_err()
    }

    #[test]
    fn loads_a_valid_policy() {
        let keys = keys();
        let policy = Policy::from_bytes(policy_text(&keys, HOT).as_bytes()).unwrap();
        let rules = policy.key("hot-1").unwrap();
        assert!(rules.separation_of_duties);
        assert_eq!(rules.amount_quorums(5).len(), 2);
        assert_eq!(rules.amount_quorums(100_000_000).len(), 2);
        assert_eq!(rules.amount_quorums(100_000_001).len(), 3);
        assert_eq!(
            rules.quorums_for(5, "anywhere").unwrap().len(),
            2,
            "no allowlist"
        );
        let alice = ApproverKey::parse(&keys.public("alice")).unwrap();
        assert_eq!(policy.approver(&alice).unwrap().department, "treasury");
        assert_eq!(policy.hash(), sha256(policy_text(&keys, HOT).as_bytes()));
    }

    #[test]
    fn allowlists_refuse_or_add_departments() {
        let keys = keys();
        let refuse = format!("{HOT}[keys.hot-1.destinations]\nallowed = [\"bc1qcold\"]\n");
        let policy = Policy::from_bytes(policy_text(&keys, &refuse).as_bytes()).unwrap();
        let rules = policy.key("hot-1").unwrap();
        assert_eq!(rules.quorums_for(5, "bc1qcold").unwrap().len(), 2);
        assert_eq!(rules.quorums_for(5, "bc1qother"), None);
        let extra = format!(
            "{HOT}[keys.hot-1.destinations]\nallowed = [\"bc1qcold\"]\nunlisted_require = {{ security = 1 }}\n"
        );
        let policy = Policy::from_bytes(policy_text(&keys, &extra).as_bytes()).unwrap();
        let q = policy
            .key("hot-1")
            .unwrap()
            .quorums_for(5, "bc1qother")
            .unwrap();
        assert_eq!(q.get("security"), Some(&1));
        assert_eq!(q.get("treasury"), Some(&1));
        let empty = format!("{HOT}[keys.hot-1.destinations]\nallowed = []\n");
        assert!(matches!(
            refusal(&keys, &empty),
            PolicyError::BadDestinations { .. }
        ));
    }

    #[test]
    fn limits_are_checked_at_load() {
        let keys = keys();
        let ok = format!(
            "{HOT}[keys.hot-1.limits]\nmax_amount_per_request = 10\nwindow_secs = 60\nmax_amount_per_window = 20\nmax_window_percent_of_daily_volume = 2.5\n"
        );
        let policy = Policy::from_bytes(policy_text(&keys, &ok).as_bytes()).unwrap();
        assert_eq!(
            policy
                .key("hot-1")
                .unwrap()
                .limits
                .window_bps_of_daily_volume,
            Some(250)
        );
        for bad in [
            "max_amount_per_window = 20\n",
            "window_secs = 60\n",
            "max_amount_per_request = 0\n",
            "window_secs = 60\nmax_window_percent_of_daily_volume = 150.0\n",
        ] {
            let text = format!("{HOT}[keys.hot-1.limits]\n{bad}");
            assert!(
                matches!(refusal(&keys, &text), PolicyError::BadLimits { .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_a_quorum_of_zero() {
        let keys = keys();
        let e = refusal(
            &keys,
            &HOT.replace("compliance = 1 }\ntiers", "compliance = 0 }\ntiers"),
        );
        assert!(
            matches!(e, PolicyError::ZeroQuorum { ref department, .. } if department == "compliance"),
            "{e}"
        );
        let e = refusal(
            &keys,
            "[keys.k]\nrequest_ttl_secs = 1\napproval_ttl_secs = 1\nrequire = {}\n",
        );
        assert!(matches!(e, PolicyError::EmptyRule { .. }), "{e}");
    }

    #[test]
    fn refuses_one_key_in_two_departments() {
        let keys = keys();
        let text = policy_text(&keys, HOT).replace(&keys.public("erin"), &keys.public("alice"));
        let e = Policy::from_bytes(text.as_bytes()).unwrap_err();
        assert!(
            matches!(e, PolicyError::DuplicateApproverKey { ref first, ref second, .. } if first == "alice" && second == "erin"),
            "{e}"
        );
    }

    #[test]
    fn refuses_other_mistakes() {
        let keys = keys();
        let unknown = HOT.replace(
            "treasury = 1, compliance = 1 }\ntiers",
            "treasury = 1, legal = 1 }\ntiers",
        );
        assert!(matches!(
            refusal(&keys, &unknown),
            PolicyError::UnknownDepartment { .. }
        ));
        let too_many = HOT.replace("security = 1", "security = 2");
        assert!(matches!(
            refusal(&keys, &too_many),
            PolicyError::QuorumTooLarge {
                need: 2,
                have: 1,
                ..
            }
        ));
        let weaker = HOT.replace(
            "treasury = 2, compliance = 1, security = 1",
            "treasury = 2, security = 1",
        );
        assert!(
            matches!(refusal(&keys, &weaker), PolicyError::TierNotStricter { ref department, .. } if department == "compliance")
        );
        let zero_ttl = HOT.replace("approval_ttl_secs = 3600", "approval_ttl_secs = 0");
        assert!(matches!(
            refusal(&keys, &zero_ttl),
            PolicyError::ZeroTtl {
                field: "approval_ttl_secs",
                ..
            }
        ));
        let decreasing = HOT.replace(
            "tiers = [{ above = 100000000,",
            "tiers = [{ above = 5, require = { treasury = 2, compliance = 1 } }, { above = 4,",
        );
        assert!(matches!(
            refusal(&keys, &decreasing),
            PolicyError::TiersNotIncreasing { .. }
        ));
        let text = policy_text(&keys, HOT).replacen("version = 1", "version = 2", 1);
        assert_eq!(
            Policy::from_bytes(text.as_bytes()).unwrap_err(),
            PolicyError::UnsupportedVersion(2)
        );
        let text = policy_text(&keys, HOT).replace("\"carol\"", "\"alice\"");
        assert!(matches!(
            Policy::from_bytes(text.as_bytes()).unwrap_err(),
            PolicyError::DuplicateApproverName(_)
        ));
        let text = policy_text(&keys, HOT).replace(&keys.public("bob"), "p256:0102");
        assert!(matches!(
            Policy::from_bytes(text.as_bytes()).unwrap_err(),
            PolicyError::BadApproverKey { .. }
        ));
        assert!(matches!(
            Policy::from_bytes(b"version = 1\nbogus = 2").unwrap_err(),
            PolicyError::Syntax(_)
        ));
    }

    /// `[governance]` after a key section (TOML tables may come in any order).
    pub const GOVERNANCE: &str = r#"
[governance]
freeze_officers = ["erin"]
unfreeze = { treasury = 1, compliance = 1 }
"#;

    #[test]
    fn governance_names_officers_of_the_roster_and_a_quorum_of_two() {
        let keys = keys();
        let policy =
            Policy::from_bytes(policy_text(&keys, &format!("{HOT}{GOVERNANCE}")).as_bytes())
                .unwrap();
        assert_eq!(
            policy.governance().freeze_officers,
            vec!["erin".to_string()]
        );
        assert_eq!(policy.governance().unfreeze.values().sum::<u32>(), 2);
        let none = Policy::from_bytes(policy_text(&keys, HOT).as_bytes()).unwrap();
        assert_eq!(none.governance(), &Governance::default());
        assert_eq!(
            refusal(
                &keys,
                &format!(
                    "{HOT}[governance]\nfreeze_officers = [\"mallory\"]\nunfreeze = {{ treasury = 2 }}\n"
                )
            ),
            PolicyError::UnknownOfficer("mallory".into())
        );
        assert!(matches!(
            refusal(&keys, &format!("{HOT}[governance]\nfreeze_officers = [\"erin\"]\nunfreeze = {{ security = 1 }}\n")),
            PolicyError::BadGovernance(m) if m.contains("at least two")
        ));
        assert!(matches!(
            refusal(&keys, &format!("{HOT}[governance]\nfreeze_officers = [\"erin\"]\n")),
            PolicyError::BadGovernance(m) if m.contains("never be lifted")
        ));
        assert!(matches!(
            refusal(
                &keys,
                &format!(
                    "{HOT}[governance]\nfreeze_officers = [\"erin\"]\nunfreeze = {{ legal = 2 }}\n"
                )
            ),
            PolicyError::UnknownDepartment { .. }
        ));
    }
}
