//! A token that lost the node's login (what a reconnecting HSM does to its
//! sessions) fails the health probe, and `Token::recover` logs in again
//! from a real SoftHSM2 token: the probe passes and the KEK seals again.

mod common;

#[test]
fn a_lost_login_fails_the_probe_until_the_node_logs_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let token = common::tokens(dir.path(), &["recovery"]).remove(0);
    token.probe().expect("a fresh token serves");
    // The login is gone for every session of the process (C_Logout is
    // per application and token).
    token
        .with_session(|s| {
            s.logout()
                .map_err(|_| ringi_signer::token::TokenError::Unexpected { what: "logout" })
        })
        .unwrap();
    let lost = token
        .probe()
        .expect_err("the KEK is private: nothing seals without a login");
    assert!(!lost.to_string().is_empty());
    token.recover().expect("logging in again");
    token.probe().expect("serves again");
    // And a second recovery (already logged in) is harmless.
    token.recover().unwrap();
    token.probe().unwrap();
}
