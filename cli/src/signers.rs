//! The signers an approver or officer speaks to directly (their governance
//! API, `ringi.signer.v1.Governance`), named on the command line or in
//! `RINGI_SIGNERS` as `NAME=ADDRESS,...`: NAME is the name in the signer's
//! certificate, ADDRESS its host:port. The list is the approver's own
//! configuration, never asked of the coordinator: a coordinator that
//! withholds a rejection could as well hide a signer.

use ringi_proto::signer::v1::governance_client::GovernanceClient;
use tonic::transport::Channel;

use crate::CliError;
use crate::connect::{ClientTls, connect};

/// One signer to reach directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerEndpoint {
    pub name: String,
    pub address: String,
}

/// Parses `NAME=ADDRESS` entries.
pub fn parse(entries: &[String]) -> Result<Vec<SignerEndpoint>, CliError> {
    let mut out: Vec<SignerEndpoint> = Vec::new();
    for entry in entries {
        let (name, address) = entry
            .split_once('=')
            .filter(|(n, a)| !n.is_empty() && !a.is_empty())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--signer takes NAME=ADDRESS (the name in the signer's certificate), got {entry:?}"
                ))
            })?;
        if out.iter().any(|s| s.name == name) {
            return Err(CliError::Usage(format!("signer {name:?} is named twice")));
        }
        out.push(SignerEndpoint {
            name: name.to_string(),
            address: address.to_string(),
        });
    }
    Ok(out)
}

/// Dials `signer`'s governance API with the CLI's own TLS identity (the
/// server's certificate must carry the signer's name).
pub async fn governance(
    signer: &SignerEndpoint,
    tls: Option<&ClientTls>,
) -> Result<GovernanceClient<Channel>, CliError> {
    let tls = tls.map(|t| ClientTls {
        server_name: signer.name.clone(),
        ..t.clone()
    });
    let channel = connect(&signer.address, tls.as_ref())
        .await
        .map_err(|e| match e {
            CliError::Connect { address, reason } => CliError::Usage(format!(
                "cannot reach signer {} at {address}: {reason}",
                signer.name
            )),
            other => other,
        })?;
    Ok(GovernanceClient::new(channel))
}

/// Refuses an empty signer list: a decision sent nowhere is not made.
pub fn require(signers: &[SignerEndpoint]) -> Result<(), CliError> {
    if signers.is_empty() {
        return Err(CliError::Usage(
            "name the signers to reach: --signer NAME=ADDRESS (repeatable) or RINGI_SIGNERS".into(),
        ));
    }
    Ok(())
}

/// Calls each signer's governance API in turn with `call`; every signer's
/// answer or failure (unreachable, refused), by name. One signer's failure
/// never stops the others being asked.
pub async fn ask_each<T, F, Fut>(
    signers: &[SignerEndpoint],
    tls: Option<&ClientTls>,
    mut call: F,
) -> Vec<(String, Result<T, CliError>)>
where
    F: FnMut(GovernanceClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut answers = Vec::with_capacity(signers.len());
    for s in signers {
        let answer = match governance(s, tls).await {
            Ok(client) => call(client).await.map_err(CliError::from),
            Err(e) => Err(e),
        };
        answers.push((s.name.clone(), answer));
    }
    answers
}

/// Fails if any signer did not answer a read (`ringi holds`, `ringi
/// policy status`), after naming each on stderr.
pub fn all_answered<T>(answers: &[(String, Result<T, CliError>)]) -> Result<(), CliError> {
    let missing = answers.iter().filter(|(_, a)| a.is_err()).count();
    for (name, answer) in answers {
        if let Err(e) = answer {
            eprintln!("ringi: {name}: {}", crate::view::printable(&e.to_string()));
        }
    }
    if missing > 0 {
        return Err(CliError::Usage(format!(
            "{missing} of {} signers did not answer",
            answers.len()
        )));
    }
    Ok(())
}

/// What each signer answered to one decision: `Ok(text)` or the refusal.
pub type Answers = Vec<(String, Result<String, String>)>;

/// The answers as [`report`] prints them.
pub fn texts(answers: Vec<(String, Result<String, CliError>)>) -> Answers {
    answers
        .into_iter()
        .map(|(name, a)| (name, a.map_err(|e| e.to_string())))
        .collect()
}

/// Prints each signer's answer to stderr and fails unless every signer
/// accepted: a decision that reached only some signers is reported, not
/// hidden (`what` names it: "rejection", "freeze", ...).
pub fn report(what: &str, answers: &Answers) -> Result<(), CliError> {
    let mut refused = 0;
    for (name, answer) in answers {
        match answer {
            Ok(text) => eprintln!("ringi: {name}: {}", crate::view::printable(text)),
            Err(e) => {
                refused += 1;
                eprintln!("ringi: {name}: NOT recorded: {}", crate::view::printable(e));
            }
        }
    }
    let accepted = answers.len() - refused;
    eprintln!(
        "ringi: {what} in force at {accepted} of {} signers",
        answers.len()
    );
    if refused > 0 {
        return Err(CliError::Usage(format!(
            "the {what} did not reach {refused} of {} signers: retry when they are back",
            answers.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_their_signer() {
        let parsed = parse(&["signer-1=127.0.0.1:7101".into(), "signer-2=h:2".into()]).unwrap();
        assert_eq!(
            parsed[0],
            SignerEndpoint {
                name: "signer-1".into(),
                address: "127.0.0.1:7101".into()
            }
        );
        assert_eq!(parsed.len(), 2);
        for bad in ["127.0.0.1:7101", "=h:1", "s="] {
            assert!(parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse(&["a=h:1".into(), "a=h:2".into()]).is_err());
    }

    #[test]
    fn a_decision_missing_at_one_signer_fails_the_command() {
        let all: Answers = vec![("s1".into(), Ok("recorded".into()))];
        assert!(report("freeze", &all).is_ok());
        let partial: Answers = vec![
            ("s1".into(), Ok("recorded".into())),
            ("s2".into(), Err("unavailable".into())),
        ];
        let err = report("freeze", &partial).unwrap_err();
        assert!(err.to_string().contains("did not reach 1 of 2"), "{err}");
    }
}
