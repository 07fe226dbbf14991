//! Who may call what on the coordinator, under mutual TLS.
//!
//! The TLS layer proves the caller's identity (a certificate from the
//! configured CA); [`interceptor`] looks that identity up among the
//! configured clients and attaches it to the request, refusing anyone not
//! configured. Handlers then check roles and key ids with [`require`] and
//! [`require_key`], and what a caller may read with [`read_scope`]. Without
//! TLS (plaintext on loopback, development) there is no identity and
//! nothing is restricted.
//!
//! Reads (`GetSigningRequest`, `ListSigningRequests`,
//! `WatchSigningRequest`) need a role: approvers and administrators read
//! every request (an approver must see what it signs and what else is
//! open); a wallet reads only the requests of its `key_ids` (a request
//! carries its approvals and signature, which are the business of that
//! key's wallet alone). A request outside a wallet's keys answers exactly
//! as a request that does not exist (NOT_FOUND, same message), so a wallet
//! learns nothing of other keys' requests, not even that an id is in use.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::config::{ClientEntry, Role};

/// The authenticated caller, attached to each request under TLS.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<ClientEntry>);

/// The configured clients, each shared so attaching one to a call is a
/// reference count, not a copy of its roles and key ids.
#[derive(Debug)]
pub struct Clients(Vec<Arc<ClientEntry>>);

impl Clients {
    pub fn new(entries: &[ClientEntry]) -> Clients {
        Clients(entries.iter().cloned().map(Arc::new).collect())
    }

    /// The client whose certificate names `name`.
    pub fn named(&self, name: &str) -> Option<&Arc<ClientEntry>> {
        self.0.iter().find(|c| c.name == name)
    }
}

/// An interceptor admitting only configured client identities (`None`:
/// plaintext, nothing to check). The caller's name comes from its
/// connection, named once at the TLS handshake (`ringi_net::peer`).
pub fn interceptor(
    clients: Option<Arc<Clients>>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let Some(clients) = &clients else {
            return Ok(request);
        };
        let name = ringi_net::peer::peer_name(&request)
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let entry = clients.named(name).ok_or_else(|| {
            Status::permission_denied(format!("client {name:?} is not a configured client"))
        })?;
        let caller = Caller(entry.clone());
        request.extensions_mut().insert(caller);
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

/// What a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadScope {
    /// Every request: approvers, administrators, a wallet allowed `"*"`,
    /// and any caller without TLS (development).
    All,
    /// Only the requests of these key ids (a wallet's `key_ids`).
    Keys(Vec<String>),
}

impl ReadScope {
    /// Whether a request for `key_id` is in scope.
    pub fn may_read(&self, key_id: &str) -> bool {
        match self {
            ReadScope::All => true,
            ReadScope::Keys(keys) => keys.iter().any(|k| k == key_id),
        }
    }
}

/// Why a read is refused (PERMISSION_DENIED).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadRefused {
    #[error("client {client:?} has no role that may read requests (wallet, approver or admin)")]
    NoReadRole { client: String },
    #[error("client {client:?} may not read requests for key {key_id:?}")]
    KeyOutOfScope { client: String, key_id: String },
}

impl From<ReadRefused> for Status {
    fn from(e: ReadRefused) -> Self {
        Status::permission_denied(e.to_string())
    }
}

/// What `caller` (`None`: no TLS) may read; refused for a configured
/// client with none of the wallet, approver and admin roles. Pure: the
/// rule, apart from where the caller comes from.
pub fn read_scope_of(caller: Option<&ClientEntry>) -> Result<ReadScope, ReadRefused> {
    let Some(c) = caller else {
        return Ok(ReadScope::All);
    };
    if c.has(Role::Approver) || c.has(Role::Admin) {
        return Ok(ReadScope::All);
    }
    if !c.has(Role::Wallet) {
        return Err(ReadRefused::NoReadRole {
            client: c.name.clone(),
        });
    }
    if c.key_ids.iter().any(|k| k == "*") {
        return Ok(ReadScope::All);
    }
    Ok(ReadScope::Keys(c.key_ids.clone()))
}

/// What the caller of `request` may read (see [`read_scope_of`]).
pub fn read_scope<T>(request: &Request<T>) -> Result<ReadScope, Status> {
    Ok(read_scope_of(caller(request))?)
}

/// Refuses a listing of `key_id`'s requests to `client` when its scope
/// does not hold the key. Naming the key reveals nothing: the refusal
/// depends only on the caller's configuration, not on what exists.
pub fn require_read_key(scope: &ReadScope, client: &str, key_id: &str) -> Result<(), ReadRefused> {
    if scope.may_read(key_id) {
        return Ok(());
    }
    Err(ReadRefused::KeyOutOfScope {
        client: client.to_string(),
        key_id: key_id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_peer(name: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(ringi_net::peer::Peer {
            remote: None,
            name: name.map(Arc::from),
        });
        r
    }

    #[test]
    fn the_interceptor_admits_configured_names_only() {
        let clients = Clients::new(&[
            client(&[Role::Wallet], &["hot-1"]),
            ClientEntry {
                name: "ops".into(),
                roles: vec![Role::Admin],
                key_ids: vec![],
            },
        ]);
        let mut admit = interceptor(Some(Arc::new(clients)));
        let admitted = admit(from_peer(Some("ops"))).unwrap();
        let who = caller(&admitted).unwrap();
        assert_eq!(who.name, "ops");
        assert!(who.has(Role::Admin) && !who.has(Role::Wallet));
        let refused = admit(from_peer(Some("stranger"))).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused
                .message()
                .contains("\"stranger\" is not a configured client")
        );
        for nameless in [from_peer(None), Request::new(())] {
            let refused = admit(nameless).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        // Without TLS there is no identity to check, and none attached.
        let plain = interceptor(None)(from_peer(Some("stranger"))).unwrap();
        assert!(caller(&plain).is_none());
    }

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

    fn client(roles: &[Role], key_ids: &[&str]) -> ClientEntry {
        ClientEntry {
            name: "c".into(),
            roles: roles.to_vec(),
            key_ids: key_ids.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn approvers_and_admins_read_everything_and_wallets_their_keys() {
        assert_eq!(read_scope_of(None), Ok(ReadScope::All));
        for roles in [
            &[Role::Approver][..],
            &[Role::Admin],
            &[Role::Wallet, Role::Approver],
        ] {
            // An approver's or admin's key_ids limit what it submits, not
            // what it reads.
            assert_eq!(
                read_scope_of(Some(&client(roles, &["hot-1"]))),
                Ok(ReadScope::All),
                "{roles:?}"
            );
        }
        let wallet = read_scope_of(Some(&client(&[Role::Wallet], &["hot-1", "hot-2"]))).unwrap();
        assert_eq!(
            wallet,
            ReadScope::Keys(vec!["hot-1".into(), "hot-2".into()])
        );
        assert!(wallet.may_read("hot-1") && wallet.may_read("hot-2"));
        assert!(!wallet.may_read("cold-1"));
        assert!(!wallet.may_read("*"));
        assert_eq!(
            read_scope_of(Some(&client(&[Role::Wallet], &["*"]))),
            Ok(ReadScope::All)
        );
        // A wallet with no keys reads nothing.
        let none = read_scope_of(Some(&client(&[Role::Wallet], &[]))).unwrap();
        assert!(!none.may_read("hot-1"));
    }

    #[test]
    fn a_client_without_a_role_reads_nothing() {
        let err = read_scope_of(Some(&client(&[], &["*"]))).unwrap_err();
        assert_eq!(err, ReadRefused::NoReadRole { client: "c".into() });
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "client \"c\" has no role that may read requests (wallet, approver or admin)"
        );
    }

    #[test]
    fn listing_a_key_out_of_scope_is_refused_by_name() {
        let scope = ReadScope::Keys(vec!["hot-1".into()]);
        assert!(require_read_key(&scope, "w", "hot-1").is_ok());
        let status = Status::from(require_read_key(&scope, "w", "cold-1").unwrap_err());
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "client \"w\" may not read requests for key \"cold-1\""
        );
        assert!(require_read_key(&ReadScope::All, "a", "cold-1").is_ok());
    }
}
