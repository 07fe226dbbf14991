//! Freeze and unfreeze statements to and from the wire
//! (`ringi.signer.v1.Governance`), as `ringi_policy::freeze` types.

use ringi_policy::approver_key::ApproverKey;
use ringi_policy::freeze::{Freeze, FreezeStatement, Scope, Unfreeze, UnfreezeStatement};

use crate::bundle::{BundleError, hash32};
use crate::signer::v1 as pb;

pub fn scope_from_pb(text: &str) -> Result<Scope, BundleError> {
    Scope::parse(text).map_err(BundleError)
}

pub fn freeze_from_pb(f: &pb::Freeze) -> Result<Freeze, BundleError> {
    Ok(Freeze {
        statement: FreezeStatement {
            scope: scope_from_pb(&f.scope)?,
            reason: f.reason.clone(),
            issued_at: f.issued_at,
        },
        officer: ApproverKey::from_sec1(&f.officer_public_key)
            .map_err(|e| BundleError(format!("officer_public_key: {e}")))?,
        signature: f.signature.clone(),
    })
}

pub fn freeze_to_pb(f: &Freeze) -> pb::Freeze {
    pb::Freeze {
        scope: f.statement.scope.to_text(),
        reason: f.statement.reason.clone(),
        issued_at: f.statement.issued_at,
        officer_public_key: f.officer.to_sec1(),
        signature: f.signature.clone(),
    }
}

pub fn unfreeze_from_pb(u: &pb::Unfreeze) -> Result<Unfreeze, BundleError> {
    Ok(Unfreeze {
        statement: UnfreezeStatement {
            freeze_id: hash32("freeze_id", &u.freeze_id)?,
            scope: scope_from_pb(&u.scope)?,
            issued_at: u.issued_at,
        },
        approver: ApproverKey::from_sec1(&u.approver_public_key)
            .map_err(|e| BundleError(format!("approver_public_key: {e}")))?,
        signature: u.signature.clone(),
    })
}

pub fn unfreeze_to_pb(u: &Unfreeze) -> pb::Unfreeze {
    pb::Unfreeze {
        freeze_id: u.statement.freeze_id.to_vec(),
        scope: u.statement.scope.to_text(),
        issued_at: u.statement.issued_at,
        approver_public_key: u.approver.to_sec1(),
        signature: u.signature.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_fields_are_named() {
        let err = freeze_from_pb(&pb::Freeze {
            scope: "everything".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.0.contains("everything"), "{}", err.0);
        let err = freeze_from_pb(&pb::Freeze {
            scope: "all".into(),
            officer_public_key: vec![1, 2],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.0.starts_with("officer_public_key"), "{}", err.0);
        let err = unfreeze_from_pb(&pb::Unfreeze {
            scope: "all".into(),
            freeze_id: vec![0; 31],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.0.contains("freeze_id must be 32 bytes"), "{}", err.0);
    }
}
