//! Which DKG transport key the coordinator names each signer by in a run
//! (a DKG, a refresh's votes, a repair).
//!
//! Signers derive pairwise ECDH secrets from their token-held transport
//! keys, so every participant of a run is named by a key on one curve. A
//! signer offers a key per curve its token can make
//! (`GetNodeInfoResponse.dkg_transport_keys`; a signer older than P-256
//! transport keys offers only its secp256k1 `dkg_public_key`). The run's
//! curve is the first of [`TransportCurve::PREFERENCE`] (secp256k1, then
//! P-256) that every participant offers: a cluster whose tokens all have
//! secp256k1 runs exactly as before, one signer on a token without it
//! (kryoptic) moves the runs it takes part in to P-256.

use ringi_policy::transport_key::TransportCurve;
use ringi_proto::signer::v1 as pb;

/// Every transport key `info` offers, with its attestation signature
/// (empty without TLS): `dkg_transport_keys`, or `dkg_public_key` alone
/// from a node that lists none.
pub fn offered(info: &pb::GetNodeInfoResponse) -> Vec<(Vec<u8>, Vec<u8>)> {
    if info.dkg_transport_keys.is_empty() {
        vec![(info.dkg_public_key.clone(), info.dkg_key_signature.clone())]
    } else {
        info.dkg_transport_keys
            .iter()
            .map(|k| (k.public_key.clone(), k.signature.clone()))
            .collect()
    }
}

/// The curves `info` offers a key on.
fn curves(info: &pb::GetNodeInfoResponse) -> Vec<TransportCurve> {
    offered(info)
        .iter()
        .filter_map(|(key, _)| TransportCurve::of(key))
        .collect()
}

/// The run's curve for these signers (name, node info): the first curve of
/// [`TransportCurve::PREFERENCE`] every one offers. Otherwise says which
/// signer offers which curves.
pub fn run_curve<'a>(
    signers: impl IntoIterator<Item = (&'a str, &'a pb::GetNodeInfoResponse)> + Clone,
) -> Result<TransportCurve, String> {
    TransportCurve::PREFERENCE
        .into_iter()
        .find(|curve| {
            signers
                .clone()
                .into_iter()
                .all(|(_, info)| curves(info).contains(curve))
        })
        .ok_or_else(|| {
            let offers: Vec<String> = signers
                .into_iter()
                .map(|(name, info)| {
                    let names: Vec<&str> = curves(info).iter().map(|c| c.name()).collect();
                    format!("{name}: {}", names.join("+"))
                })
                .collect();
            format!(
                "the signers' DKG transport keys share no curve ({})",
                offers.join(", ")
            )
        })
}

/// `identifier`'s participant entry, named by its key on `curve` with that
/// key's attestation.
pub fn participant_on(
    identifier: u16,
    info: &pb::GetNodeInfoResponse,
    curve: TransportCurve,
) -> Option<pb::DkgParticipant> {
    offered(info)
        .into_iter()
        .find(|(key, _)| TransportCurve::of(key) == Some(curve))
        .map(|(key, signature)| participant(identifier, info, key, signature))
}

/// `identifier`'s participant entry named by its key `wire` (as a repair
/// order names it), if the signer offers that key.
pub fn participant_with_key(
    identifier: u16,
    info: &pb::GetNodeInfoResponse,
    wire: &[u8],
) -> Option<pb::DkgParticipant> {
    offered(info)
        .into_iter()
        .find(|(key, _)| key == wire)
        .map(|(key, signature)| participant(identifier, info, key, signature))
}

fn participant(
    identifier: u16,
    info: &pb::GetNodeInfoResponse,
    key: Vec<u8>,
    signature: Vec<u8>,
) -> pb::DkgParticipant {
    pb::DkgParticipant {
        identifier: u32::from(identifier),
        dkg_public_key: key,
        dkg_key_certificate: info.dkg_key_certificate.clone(),
        dkg_key_signature: signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k1(b: u8) -> Vec<u8> {
        [[2u8].as_slice(), &[b; 32]].concat()
    }

    fn p256(b: u8) -> Vec<u8> {
        TransportCurve::P256.wire(&k1(b))
    }

    fn info(keys: &[Vec<u8>]) -> pb::GetNodeInfoResponse {
        pb::GetNodeInfoResponse {
            dkg_public_key: keys[0].clone(),
            dkg_key_signature: vec![1],
            dkg_transport_keys: keys
                .iter()
                .map(|k| pb::DkgTransportKey {
                    public_key: k.clone(),
                    signature: k[..3].to_vec(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn prefers_secp256k1_and_moves_to_p256_for_a_node_without_it() {
        let both = info(&[k1(1), p256(1)]);
        let both2 = info(&[k1(2), p256(2)]);
        let p256_only = info(&[p256(3)]);
        assert_eq!(
            run_curve([("a", &both), ("b", &both2)]),
            Ok(TransportCurve::Secp256k1)
        );
        assert_eq!(
            run_curve([("a", &both), ("b", &both2), ("c", &p256_only)]),
            Ok(TransportCurve::P256)
        );
        let p = participant_on(3, &p256_only, TransportCurve::P256).unwrap();
        assert_eq!(p.dkg_public_key, p256(3));
        assert_eq!(p.dkg_key_signature, p256(3)[..3].to_vec());
        assert!(participant_on(3, &p256_only, TransportCurve::Secp256k1).is_none());
        assert_eq!(
            participant_with_key(1, &both, &p256(1))
                .unwrap()
                .dkg_key_signature,
            p256(1)[..3].to_vec()
        );
        assert!(participant_with_key(1, &both, &p256(2)).is_none());
    }

    #[test]
    fn an_old_node_offers_its_secp256k1_key_and_may_share_no_curve() {
        let old = pb::GetNodeInfoResponse {
            dkg_public_key: k1(1),
            dkg_key_signature: vec![7],
            ..Default::default()
        };
        assert_eq!(offered(&old), vec![(k1(1), vec![7])]);
        let p256_only = info(&[p256(3)]);
        let err = run_curve([("old", &old), ("new", &p256_only)]).unwrap_err();
        assert!(err.contains("old: secp256k1, new: P-256"), "{err}");
    }
}
