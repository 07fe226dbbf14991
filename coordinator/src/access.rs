//! Who may call what on the coordinator, under mutual TLS.
//!
//! The TLS layer proves the caller's identity (a certificate from the
//! configured CA); [`interceptor`] looks that identity up among the
//! configured clients and attaches it to the request, refusing anyone not
//! configured. Handlers then check roles and key ids with [`require`] and
//! [`require_key`]. Without TLS (plaintext on loopback, development) there
//! is no identity and nothing is restricted.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::config::{ClientEntry, Role};

/// The authenticated caller, attached to each request under TLS.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<ClientEntry>);

/// An interceptor admitting only configured client identities.
pub fn interceptor(
    clients: Option<Arc<Vec<ClientEntry>>>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let Some(clients) = &clients else {
            return Ok(request);
        };
        let name = request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(ringi_net::tls::identity))
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let entry = clients.iter().find(|c| c.name == name).ok_or_else(|| {
            Status::permission_denied(format!("client {name:?} is not a configured client"))
        })?;
        request
            .extensions_mut()
            .insert(Caller(Arc::new(entry.clone())));
        Ok(request)
    }
}

/// The caller, if the request came over TLS.
pub fn caller<T>(request: &Request<T>) -> Option<&ClientEntry> {
    request.extensions().get::<Caller>().map(|c| c.0.as_ref())
}

/// Refuses callers without `role` (no-op without TLS).
pub fn require<T>(request: &Request<T>, role: Role) -> Result<(), Status> {
    match caller(request) {
        Some(c) if !c.has(role) => Err(Status::permission_denied(format!(
            "client {:?} lacks the {role:?} role",
            c.name
        ))),
        _ => Ok(()),
    }
}

/// Refuses wallets not allowed to use `key_id` (no-op without TLS).
pub fn require_key<T>(request: &Request<T>, key_id: &str) -> Result<(), Status> {
    match caller(request) {
        Some(c) if !c.may_use_key(key_id) => Err(Status::permission_denied(format!(
            "client {:?} may not submit requests for key {key_id:?}",
            c.name
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(entry: ClientEntry) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(Caller(Arc::new(entry)));
        r
    }

    #[test]
    fn roles_and_keys_are_enforced_only_under_tls() {
        let wallet = ClientEntry {
            name: "w".into(),
            roles: vec![Role::Wallet],
            key_ids: vec!["hot-1".into()],
        };
        let r = with(wallet);
        assert!(require(&r, Role::Wallet).is_ok());
        assert_eq!(
            require(&r, Role::Admin).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(require_key(&r, "hot-1").is_ok());
        let err = require_key(&r, "cold-1").unwrap_err();
        assert!(
            err.message()
                .contains("may not submit requests for key \"cold-1\"")
        );
        let plain = Request::new(());
        assert!(require(&plain, Role::Admin).is_ok());
        assert!(require_key(&plain, "cold-1").is_ok());
        let star = with(ClientEntry {
            name: "a".into(),
            roles: vec![Role::Admin],
            key_ids: vec!["*".into()],
        });
        assert!(require_key(&star, "anything").is_ok());
    }
}
