//! What a signer does with a coordinator's Commit and Sign calls, as plain
//! functions (`ringi_signer::round1::commit`, `ringi_signer::round2::sign`)
//! on token-free test doubles (`MemoryVault`, `MemoryAudit`; the ledger is
//! a real in-memory SQLite ledger): the approval bundle and the signing
//! package are the coordinator's, so a compromised coordinator chooses
//! them.
//!
//! Round 1 input: an approval-bundle harness input (see
//! [`crate::approval_bundle`]). Reaches the signer's authorization (bundle
//! present, decoded, for this key, approved under the pinned policy), the
//! vault's commit and the audit entry; checks that a refusal leaves no nonce
//! behind and a commitment leaves exactly one.
//!
//! Round 2 input: the same bundle, length-delimited, then `mode (1) ‖ rest`.
//! - even mode: `rest` is the signing package (anything the fuzzer makes);
//!   it never yields a share (this node issued no commitments for it);
//! - odd mode: the harness runs round 1 on two signers with the bundle, and
//!   builds the signing package from their commitments over the approved
//!   message (or, with mode bit 1, over `rest`); round 2 on both signers;
//!   the shares must aggregate (`Suite::aggregate`) to a signature that
//!   verifies under the group key, a second round 2 with the same package
//!   must be refused (a nonce is used at most once), and another message
//!   than the approved one must be refused. With mode bit 2, the second
//!   signer signs in a batch (`sign_each`) behind `rest` as another
//!   package: `rest` must be refused alone, the real item answered as
//!   alone.
//!
//! Reaches: authorization, signing-package decoding, the message check, the
//! spending caps in the ledger, the nonce store, FROST round 2 and the audit
//! entry before release.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use frost_core::SigningPackage;
use frost_core::keys::{IdentifierList, KeyPackage, PublicKeyPackage};
use ringi_frost::{Secp256k1, Suite};
use ringi_policy::key_id::KeyId;
use ringi_policy::policy::Policy;
use ringi_signer::authorize::{AuthorizationError, PresentedBundle};
use ringi_signer::round2::SignItem;
use ringi_signer::signing::{SignError, SigningContext};
use ringi_signer::spending::SpendingLedger;
use ringi_signer::test_doubles::{MemoryAudit, MemoryVault};
use ringi_signer::vault::ShareVault;

use crate::approval_bundle::prepare;
use crate::harness_keys::{KEY_ID, POLICY};

type S = Secp256k1;

crate::stages!(
    /// How far a round-1 input got.
    Round1Reached {
        Undecodable,
        /// The signer's authorization refused it.
        Unauthorized,
        /// Approved: commitments issued, one nonce pair kept.
        Committed,
    }
);

crate::stages!(
    /// How far a round-2 input got.
    Round2Reached {
        Undecodable,
        Unauthorized,
        /// Round 1 refused the harness's signers (odd modes).
        Round1Refused,
        MalformedPackage,
        MessageMismatch,
        CapExceeded,
        /// The vault refused: not a participant, or no such nonces.
        VaultRefused,
        /// Two shares released; they aggregate to a valid signature.
        Signed,
    }
);

/// A 2-of-3 key from a dealer, made once per process.
/// Each participant's number and key package, and the public key package.
type Dealt = (Vec<(u16, KeyPackage<S>)>, PublicKeyPackage<S>);

static KEY: LazyLock<Dealt> = LazyLock::new(|| {
    let (shares, public) = frost_core::keys::generate_with_dealer::<S, _>(
        3,
        2,
        IdentifierList::Default,
        &mut rand::rngs::OsRng,
    )
    .expect("a dealer key");
    let packages = shares
        .into_iter()
        .map(|(id, share)| {
            let number = S::participant_number(&id).expect("default identifiers are numbers");
            (number, KeyPackage::try_from(share).expect("a valid share"))
        })
        .collect();
    (packages, public)
});
static PINNED: LazyLock<Arc<Policy>> = LazyLock::new(|| Arc::new(POLICY.clone()));

fn key_id() -> KeyId {
    KeyId::parse(KEY_ID).expect("a valid key id")
}

/// One signer: a fresh memory vault holding participant `index`'s share, a
/// fresh in-memory ledger and audit.
struct Node {
    vault: Arc<MemoryVault<S>>,
    audit: Arc<MemoryAudit>,
    ctx: SigningContext<S>,
}

fn node(index: usize) -> Node {
    let (number, package) = &KEY.0[index];
    let vault = Arc::new(MemoryVault::<S>::new());
    vault
        .store(&key_id(), *number, package, &KEY.1)
        .expect("a fresh vault stores a share");
    let ledger = Arc::new(
        SpendingLedger::open(std::path::Path::new(":memory:")).expect("an in-memory ledger"),
    );
    let audit = Arc::new(MemoryAudit::new());
    let holds = Arc::new(
        ringi_signer::holds::HoldStore::open(std::path::Path::new(":memory:"))
            .expect("an in-memory hold store"),
    );
    let ctx = SigningContext::new(
        vault.clone(),
        Arc::new(ringi_policy::policy_store::PolicyStore::fixed(
            PINNED.as_ref().clone(),
        )),
        ledger,
        None,
        audit.clone(),
        holds,
    );
    Node { vault, audit, ctx }
}

pub fn round1(data: &[u8]) -> Round1Reached {
    let Some((prepared, _)) = prepare(data, false) else {
        return Round1Reached::Undecodable;
    };
    let bundle = PresentedBundle::from(Some(prepared.bundle));
    let n = node(0);
    match ringi_signer::round1::commit(&n.ctx, &key_id(), &bundle, prepared.now) {
        Ok(out) => {
            assert_eq!(
                n.vault.nonces_waiting(),
                1,
                "one commitment, one nonce pair"
            );
            assert_eq!(out.identifier, KEY.0[0].0);
            assert_eq!(n.audit.events(), vec!["commit_issued".to_string()]);
            Round1Reached::Committed
        }
        Err(e) => {
            assert_eq!(
                n.vault.nonces_waiting(),
                0,
                "a refusal left a nonce behind: {e}"
            );
            Round1Reached::Unauthorized
        }
    }
}

fn classify(e: &SignError) -> Round2Reached {
    match e {
        SignError::Authorization(AuthorizationError::MessageMismatch) => {
            Round2Reached::MessageMismatch
        }
        SignError::Authorization(AuthorizationError::CapExceeded(_)) => Round2Reached::CapExceeded,
        SignError::Authorization(_) => Round2Reached::Unauthorized,
        SignError::MalformedSigningPackage(_) => Round2Reached::MalformedPackage,
        _ => Round2Reached::VaultRefused,
    }
}

pub fn round2(data: &[u8]) -> Round2Reached {
    let Some((prepared, rest)) = prepare(data, true) else {
        return Round2Reached::Undecodable;
    };
    let Some((&mode, rest)) = rest.split_first() else {
        return Round2Reached::Undecodable;
    };
    let approved_message = prepared
        .bundle
        .as_ref()
        .ok()
        .map(|(r, _)| r.message.clone());
    let bundle = PresentedBundle::from(Some(prepared.bundle));
    let now = prepared.now;
    let k = key_id();
    let a = node(0);
    if mode & 1 == 0 {
        let result = ringi_signer::round2::sign(&a.ctx, &k, &bundle, rest, &[], now);
        let e = result.expect_err("a share for commitments this node never issued");
        assert!(!a.audit.events().contains(&"share_released".to_string()));
        return classify(&e);
    }
    let b = node(1);
    let (Ok(ca), Ok(cb)) = (
        ringi_signer::round1::commit(&a.ctx, &k, &bundle, now),
        ringi_signer::round1::commit(&b.ctx, &k, &bundle, now),
    ) else {
        return Round2Reached::Round1Refused;
    };
    let message = match (mode & 2 != 0, &approved_message) {
        (false, Some(m)) => m.clone(),
        _ => rest.to_vec(),
    };
    let commitments = BTreeMap::from([
        (
            ringi_frost::identifier::<S>(ca.identifier).expect("a participant"),
            ca.commitments,
        ),
        (
            ringi_frost::identifier::<S>(cb.identifier).expect("a participant"),
            cb.commitments,
        ),
    ]);
    let package = SigningPackage::new(commitments, &message);
    let bytes = package.serialize().expect("a signing package serializes");
    let sa = ringi_signer::round2::sign(&a.ctx, &k, &bundle, &bytes, &[], now);
    let sb = if mode & 4 != 0 {
        // In a batch behind `rest` as a second package: its refusal is its
        // own, and the real package's item is answered as alone.
        let item = |signing_package| SignItem {
            bundle: &bundle,
            signing_package,
            excluded: &[],
        };
        let mut out = ringi_signer::round2::sign_each(&b.ctx, &k, &[item(rest), item(&bytes)], now);
        assert_eq!(out.len(), 2, "one result per item");
        let sb = out.pop().expect("two results");
        let other = out.pop().expect("two results");
        assert!(
            other.is_err() || rest == &bytes[..],
            "a share for a package over commitments this node never issued"
        );
        sb
    } else {
        ringi_signer::round2::sign(&b.ctx, &k, &bundle, &bytes, &[], now)
    };
    let (sa, sb) = match (sa, sb) {
        (Ok(sa), Ok(sb)) => (sa, sb),
        (Err(e), _) | (_, Err(e)) => {
            if Some(&message) != approved_message.as_ref() {
                assert!(
                    matches!(
                        e,
                        SignError::Authorization(AuthorizationError::MessageMismatch)
                    ),
                    "another message refused for another reason: {e}"
                );
            }
            return classify(&e);
        }
    };
    assert_eq!(
        Some(&message),
        approved_message.as_ref(),
        "a share for an unapproved message"
    );
    let shares = BTreeMap::from([
        (*KEY.0[0].1.identifier(), sa.signature_share),
        (*KEY.0[1].1.identifier(), sb.signature_share),
    ]);
    let signature = S::aggregate(&package, &shares, &KEY.1).expect("honest shares aggregate");
    KEY.1
        .verifying_key()
        .verify(&message, &signature)
        .expect("the group signature verifies");
    // The same package again gets the same share (the node's release
    // log), never a second use of the nonces.
    let again = ringi_signer::round2::sign(&a.ctx, &k, &bundle, &bytes, &[], now)
        .expect("the same package gets its share again");
    assert_eq!(
        again.signature_share,
        shares[KEY.0[0].1.identifier()],
        "a second, different share for one package"
    );
    Round2Reached::Signed
}

fn bundle_input(
    amount: u128,
    approvals: Vec<ringi_proto::approval::v1::Approval>,
    delimited: bool,
) -> Vec<u8> {
    use crate::approval_bundle::{encode, request};
    encode(
        3,
        60,
        request(amount, crate::harness_keys::ALLOWED_DESTINATION),
        approvals,
        delimited,
    )
}

fn approved(delimited: bool) -> Vec<u8> {
    use crate::approval_bundle::approval;
    bundle_input(
        1000,
        vec![
            approval(0, "treasury", "approve"),
            approval(2, "compliance", "approve"),
        ],
        delimited,
    )
}

pub fn round1_seeds() -> Vec<Vec<u8>> {
    use crate::approval_bundle::approval;
    vec![
        approved(false),
        bundle_input(1000, vec![approval(0, "treasury", "approve")], false),
    ]
}

pub fn round2_seeds() -> Vec<Vec<u8>> {
    let with = |mode: u8, rest: &[u8]| {
        let mut s = approved(true);
        s.push(mode);
        s.extend_from_slice(rest);
        s
    };
    vec![
        with(1, b""),
        with(5, b"not a signing package, batched"),
        with(3, b"another message"),
        with(0, b"not a signing package"),
        {
            use crate::approval_bundle::approval;
            let mut s = bundle_input(
                2_000_000_000,
                vec![
                    approval(0, "treasury", "approve"),
                    approval(1, "treasury", "approve"),
                    approval(2, "compliance", "approve"),
                ],
                true,
            );
            s.push(1);
            s
        },
    ]
}
