//! The node's PKCS#11 token: the only code that talks to the HSM.
//!
//! What lives in the token:
//! - the share KEK: an AES-256 key generated inside the token, sensitive and
//!   non-extractable, allowed only CKM_AES_GCM. Key shares are sealed and
//!   unsealed with it inside the token (see [`crate::sealed_share`]);
//! - the DKG transport keys: key pairs generated inside the token whose
//!   private halves can only derive (CKM_ECDH1_DERIVE), one on secp256k1
//!   where the token has that curve and one on P-256. Round-2 DKG packages
//!   are encrypted between nodes with them (see [`crate::dkg_envelope`] and
//!   [`crate::transport_key`]: a run uses one curve);
//! - the audit key: a P-256 key pair generated inside the token whose private
//!   half can only sign; it signs the audit log's checkpoints;
//! - the TLS key: likewise, the node's TLS identity (mutual TLS);
//! - one private CKO_DATA object per key id holding that key's sealed share.
//!
//! The process logs in once (C_Login costs ~2 ms in SoftHSM) and keeps that
//! session open for its whole life, because closing the last session of a
//! token logs it out. Work sessions come from a small pool. Object handles are
//! looked up once and cached; a handle that went stale is looked up again.
//!
//! Nothing here logs or formats a PIN or a plaintext secret: the PIN is a
//! [`SecretString`], decrypted data is returned in [`Zeroizing`] buffers.
//!
//! Each operation's time is recorded by [`TokenOp`] (`crate::metrics`).
//!
//! Only standard PKCS#11 is used, and nothing one module does that another
//! may not (docs/operations.md, "PKCS#11 modules: what ringi needs"):
//! CKA_EC_POINT is read both DER-wrapped (SoftHSM2) and raw (kryoptic), a
//! wrong AES-GCM tag is whichever of the error codes modules use for it,
//! and a token without secp256k1 gets a P-256 transport key only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::metrics::{TokenOp, token_op};
use crate::transport_key::{TransportCurve, TransportKey};

/// CKA_LABEL of the share key-encryption key.
pub const KEK_LABEL: &str = "ringi-share-kek";
/// CKA_LABEL of both halves of the secp256k1 DKG transport key pair.
pub const DKG_KEY_LABEL: &str = "ringi-dkg-transport";
/// CKA_LABEL of both halves of the P-256 DKG transport key pair.
pub const DKG_P256_KEY_LABEL: &str = "ringi-dkg-transport-p256";
/// CKA_LABEL of both halves of the audit checkpoint key pair (P-256, sign).
pub const AUDIT_KEY_LABEL: &str = "ringi-audit";
/// CKA_LABEL of both halves of the node's TLS identity key pair (P-256, sign).
pub const TLS_KEY_LABEL: &str = "ringi-tls";
/// CKA_APPLICATION of every data object ringi creates.
pub const APPLICATION: &str = "ringi";
/// CKA_LABEL prefix of sealed-share data objects; the key id follows, and
/// for a share of a refreshed key `@` and its generation (see
/// [`share_label`]).
pub const SHARE_LABEL_PREFIX: &str = "ringi-share:";

/// The CKA_LABEL of `key_id`'s share of `generation`: the DKG's share
/// (generation 0) keeps the label it always had; a refresh's share goes
/// next to it under `@generation` (a key id never holds `@`).
pub fn share_label(key_id: &str, generation: u32) -> String {
    if generation == 0 {
        format!("{SHARE_LABEL_PREFIX}{key_id}")
    } else {
        format!("{SHARE_LABEL_PREFIX}{key_id}@{generation}")
    }
}

/// DER OID of secp256k1, the CKA_EC_PARAMS of the secp256k1 transport key.
const SECP256K1_OID: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x0A];
/// DER OID of P-256, the CKA_EC_PARAMS of the audit, TLS and P-256
/// transport keys.
const P256_OID: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// Length of an AES-GCM IV. The caller's IV is used verbatim (SoftHSM2 and
/// kryoptic alike, with CKG_NO_GENERATE), so every seal draws a fresh one.
pub const GCM_IV_LEN: usize = 12;
/// Work sessions kept open for reuse. Beyond this, extra sessions are closed
/// after use (more threads than cores only add latency on the token).
const MAX_IDLE_SESSIONS: usize = 8;

/// Where the token is and how to log in.
pub struct TokenConfig {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// CKA_LABEL of the token (slot ids change when tokens are added, labels do not).
    pub token_label: String,
    /// The user PIN. Never logged.
    pub pin: SecretString,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"<redacted>")
            .finish()
    }
}

/// What went wrong with the token. Messages name the operation and the
/// PKCS#11 return value, never data.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("PKCS#11 module {0}: file not found")]
    ModuleNotFound(PathBuf),
    #[error("cannot load PKCS#11 module {path}: {reason}")]
    ModuleLoad { path: PathBuf, reason: String },
    #[error("no token labelled {0:?} in any slot of the PKCS#11 module")]
    TokenNotFound(String),
    #[error("the token refused the PIN ({0:?})")]
    BadPin(RvError),
    #[error(
        "the token has no ringi keys ({0} missing): run `ringi-signer init` once to create them"
    )]
    NotInitialized(&'static str),
    #[error("the token holds a sealed share for key id {0:?} already")]
    ShareExists(String),
    #[error(
        "the token could not unseal the data (wrong key, wrong binding, or tampered ciphertext)"
    )]
    Unseal,
    #[error("the token returned an unexpected {what}")]
    Unexpected { what: &'static str },
    #[error("PKCS#11 {function} failed: {rv}")]
    Pkcs11 { function: String, rv: String },
}

impl TokenError {
    fn from_ck(e: CkError) -> Self {
        match e {
            CkError::Pkcs11(rv, function) => TokenError::Pkcs11 {
                function: format!("{function:?}"),
                rv: format!("{rv:?}"),
            },
            other => TokenError::Pkcs11 {
                function: "call".into(),
                rv: other.to_string(),
            },
        }
    }

    fn is_stale_handle(e: &CkError) -> bool {
        matches!(
            e,
            CkError::Pkcs11(RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid, _)
        )
    }
}

/// A sealed share as found on the token: its key id and stored bytes.
pub struct StoredShare {
    pub key_id: String,
    pub sealed: Vec<u8>,
}

/// An open, logged-in token.
pub struct Token {
    ctx: Pkcs11,
    slot: Slot,
    /// The session that holds the login. Never used for work; replaced
    /// only by [`Token::recover`].
    login: Mutex<Session>,
    /// To log in again when the token comes back ([`Token::recover`]).
    /// Never logged; zeroized when the token is dropped.
    pin: SecretString,
    idle: Mutex<Vec<Session>>,
    handles: Mutex<Handles>,
}

#[derive(Default, Clone, Copy)]
struct Handles {
    kek: Option<ObjectHandle>,
    dkg_secp256k1: Option<ObjectHandle>,
    dkg_p256: Option<ObjectHandle>,
    /// The P-256 keys that sign audit checkpoints and TLS handshakes (a
    /// C_FindObjects per checkpoint was 0.9 % of a coordinator's CPU under
    /// load).
    audit: Option<ObjectHandle>,
    tls: Option<ObjectHandle>,
}

/// The CKA_LABEL of the transport key on `curve`.
pub fn dkg_key_label(curve: TransportCurve) -> &'static str {
    match curve {
        TransportCurve::Secp256k1 => DKG_KEY_LABEL,
        TransportCurve::P256 => DKG_P256_KEY_LABEL,
    }
}

/// What [`Token::initialize_keys`] did.
#[derive(Debug, Default)]
pub struct Initialized {
    /// The labels of the keys it created.
    pub created: Vec<&'static str>,
    /// The transport curves the token refused to make a key on, with the
    /// PKCS#11 return value (the node then has no key on that curve).
    pub unsupported: Vec<(TransportCurve, String)>,
}

/// One PKCS#11 context per module per process: C_Initialize may run only once
/// per process, and tests run many tokens in one process.
fn context(module: &Path) -> Result<Pkcs11, TokenError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    if !module.exists() {
        return Err(TokenError::ModuleNotFound(module.to_path_buf()));
    }
    let ctx = Pkcs11::new(module).map_err(|e| TokenError::ModuleLoad {
        path: module.to_path_buf(),
        reason: e.to_string(),
    })?;
    // OS_LOCKING_OK: without it SoftHSM turns its internal locking off and a
    // multi-threaded server corrupts its state.
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(TokenError::from_ck(e)),
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// Logs `session`'s token in as user (already logged in is fine); a PIN
/// the token refuses is [`TokenError::BadPin`].
fn log_in(session: &Session, pin: &SecretString) -> Result<(), TokenError> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(
            rv @ (RvError::PinIncorrect
            | RvError::PinInvalid
            | RvError::PinLenRange
            | RvError::PinLocked
            | RvError::PinExpired),
            _,
        )) => Err(TokenError::BadPin(rv)),
        Err(e) => Err(TokenError::from_ck(e)),
    }
}

impl Token {
    /// Loads the module, finds the token by label and logs in as user.
    pub fn open(config: &TokenConfig) -> Result<Self, TokenError> {
        let ctx = context(&config.module)?;
        let slot = find_slot(&ctx, &config.token_label)?;
        let login = ctx.open_rw_session(slot).map_err(TokenError::from_ck)?;
        log_in(&login, &config.pin)?;
        Ok(Token {
            ctx,
            slot,
            login: Mutex::new(login),
            pin: config.pin.clone(),
            idle: Mutex::new(Vec::new()),
            handles: Mutex::new(Handles::default()),
        })
    }

    /// The token's serial number (CKA serialNumber of its token info), which
    /// tells two tokens with one label apart.
    pub fn serial_number(&self) -> Result<String, TokenError> {
        let info = self
            .ctx
            .get_token_info(self.slot)
            .map_err(TokenError::from_ck)?;
        Ok(info.serial_number().trim_end().to_string())
    }

    /// Runs `f` with a logged-in work session from the pool.
    pub fn with_session<T>(
        &self,
        f: impl FnOnce(&Session) -> Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        let session = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let session = match session {
            Some(s) => s,
            None => self
                .ctx
                .open_rw_session(self.slot)
                .map_err(TokenError::from_ck)?,
        };
        let result = f(&session);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_SESSIONS {
            idle.push(session);
        }
        result
    }

    /// Creates the share KEK and the DKG transport, audit and TLS key
    /// pairs that are missing. A token that cannot make secp256k1 keys
    /// gets a P-256 transport key only (reported in
    /// [`Initialized::unsupported`]); every other refusal is an error.
    /// Idempotent.
    pub fn initialize_keys(&self) -> Result<Initialized, TokenError> {
        let mut created = Vec::new();
        let mut unsupported = Vec::new();
        self.with_session(|s| {
            if find_one(s, &key_template(ObjectClass::SECRET_KEY, KEK_LABEL))?.is_none() {
                let id = s.generate_random_vec(16).map_err(TokenError::from_ck)?;
                s.generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Wrap(false),
                        Attribute::Unwrap(false),
                        Attribute::Sign(false),
                        Attribute::Verify(false),
                        Attribute::Derive(false),
                        Attribute::Modifiable(false),
                        Attribute::ValueLen(32.into()),
                        Attribute::AllowedMechanisms(vec![MechanismType::AES_GCM]),
                        Attribute::Label(KEK_LABEL.into()),
                        Attribute::Id(id),
                    ],
                )
                .map_err(TokenError::from_ck)?;
                created.push(KEK_LABEL);
            }
            // The DKG transport keys only derive (ECDH); the audit and TLS
            // keys only sign. Only secp256k1 may be missing from a token.
            for (label, oid, usage, optional) in [
                (DKG_KEY_LABEL, SECP256K1_OID, KeyUse::Derive, true),
                (DKG_P256_KEY_LABEL, P256_OID, KeyUse::Derive, false),
                (AUDIT_KEY_LABEL, P256_OID, KeyUse::Sign, false),
                (TLS_KEY_LABEL, P256_OID, KeyUse::Sign, false),
            ] {
                if find_one(s, &key_template(ObjectClass::PRIVATE_KEY, label))?.is_some() {
                    continue;
                }
                match generate_ec_pair(s, label, oid, usage) {
                    Ok(()) => created.push(label),
                    Err(CkError::Pkcs11(rv, _)) if optional && curve_refused(rv) => {
                        unsupported.push((TransportCurve::Secp256k1, format!("{rv:?}")));
                    }
                    Err(e) => return Err(TokenError::from_ck(e)),
                }
            }
            Ok(())
        })?;
        Ok(Initialized {
            created,
            unsupported,
        })
    }

    /// The audit checkpoint public key, SEC1 uncompressed P-256.
    pub fn audit_public_key(&self) -> Result<Vec<u8>, TokenError> {
        self.ec_public_key(AUDIT_KEY_LABEL)
    }

    /// ECDSA P-256 over SHA-256(`statement`) with the audit key, inside the
    /// token. Returns r ‖ s (64 bytes).
    pub fn audit_sign(&self, statement: &[u8]) -> Result<Vec<u8>, TokenError> {
        token_op(TokenOp::AuditSign, || {
            self.p256_sign(AUDIT_KEY_LABEL, |h| &mut h.audit, statement)
        })
    }

    /// The TLS identity public key, SEC1 uncompressed P-256.
    pub fn tls_public_key(&self) -> Result<Vec<u8>, TokenError> {
        self.ec_public_key(TLS_KEY_LABEL)
    }

    /// ECDSA P-256 over SHA-256(`message`) with the TLS identity key, inside
    /// the token. Returns r ‖ s (64 bytes).
    pub fn tls_sign(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        token_op(TokenOp::TlsSign, || {
            self.p256_sign(TLS_KEY_LABEL, |h| &mut h.tls, message)
        })
    }

    /// ECDSA P-256 with the private key `label`, its handle cached in
    /// `slot`.
    fn p256_sign(
        &self,
        label: &'static str,
        slot: fn(&mut Handles) -> &mut Option<ObjectHandle>,
        message: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(message);
        self.with_key(
            |t| t.cached(slot, ObjectClass::PRIVATE_KEY, label),
            |s, key| s.sign(&Mechanism::Ecdsa, key, &digest),
        )?
        .map_err(TokenError::from_ck)
    }

    /// Whether the token can do the node's work now: it is present, and
    /// the share KEK seals a throwaway value (what every round 2 needs).
    /// For the node's health (`crate::token_health`).
    pub fn probe(&self) -> Result<(), TokenError> {
        self.ctx
            .get_token_info(self.slot)
            .map_err(TokenError::from_ck)?;
        let mut iv = [0u8; GCM_IV_LEN];
        self.random(&mut iv)?;
        self.seal(&iv, b"ringi token probe", b"probe").map(|_| ())
    }

    /// Logs in again after the token went away and came back (an HSM
    /// restarted, a slot re-plugged): its sessions and login are gone, so a
    /// new login session replaces the old one, and no pooled session or
    /// cached handle is used again. [`TokenError::BadPin`] if the PIN no
    /// longer works (the caller must stop retrying: a token locks after a
    /// few wrong PINs).
    pub fn recover(&self) -> Result<(), TokenError> {
        let login = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(TokenError::from_ck)?;
        log_in(&login, &self.pin)?;
        // The new login session is open before the old one closes, so the
        // token never sees its last session go (which would log it out).
        *self.login.lock().unwrap_or_else(|p| p.into_inner()) = login;
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.forget_handles();
        Ok(())
    }

    /// Checks that `ringi-signer init` has run and caches the key handles:
    /// the KEK, the audit and TLS keys, and at least one transport key (a
    /// token initialised before P-256 transport keys existed has only its
    /// secp256k1 one until `ringi-signer init` runs again).
    pub fn require_keys(&self) -> Result<(), TokenError> {
        self.kek()?;
        self.audit_public_key()?;
        self.tls_public_key()?;
        if self.dkg_public_keys()?.is_empty() {
            return Err(TokenError::NotInitialized(DKG_P256_KEY_LABEL));
        }
        Ok(())
    }

    fn kek(&self) -> Result<ObjectHandle, TokenError> {
        self.cached(|h| &mut h.kek, ObjectClass::SECRET_KEY, KEK_LABEL)
    }

    fn dkg_private(&self, curve: TransportCurve) -> Result<ObjectHandle, TokenError> {
        let label = dkg_key_label(curve);
        match curve {
            TransportCurve::Secp256k1 => {
                self.cached(|h| &mut h.dkg_secp256k1, ObjectClass::PRIVATE_KEY, label)
            }
            TransportCurve::P256 => {
                self.cached(|h| &mut h.dkg_p256, ObjectClass::PRIVATE_KEY, label)
            }
        }
    }

    fn cached(
        &self,
        slot: impl Fn(&mut Handles) -> &mut Option<ObjectHandle>,
        class: ObjectClass,
        label: &'static str,
    ) -> Result<ObjectHandle, TokenError> {
        if let Some(h) = *slot(&mut self.handles.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(h);
        }
        let found = self
            .with_session(|s| find_one(s, &key_template(class, label)))?
            .ok_or(TokenError::NotInitialized(label))?;
        *slot(&mut self.handles.lock().unwrap_or_else(|p| p.into_inner())) = Some(found);
        Ok(found)
    }

    fn forget_handles(&self) {
        *self.handles.lock().unwrap_or_else(|p| p.into_inner()) = Handles::default();
    }

    /// Runs a key operation, looking the key up again once if its cached
    /// handle went stale. The outer error is the lookup, the inner the operation.
    fn with_key<T>(
        &self,
        key: impl Fn(&Self) -> Result<ObjectHandle, TokenError>,
        op: impl Fn(&Session, ObjectHandle) -> Result<T, CkError>,
    ) -> Result<Result<T, CkError>, TokenError> {
        let handle = key(self)?;
        match self.with_session(|s| Ok(op(s, handle)))? {
            Err(e) if TokenError::is_stale_handle(&e) => {
                self.forget_handles();
                let handle = key(self)?;
                self.with_session(|s| Ok(op(s, handle)))
            }
            other => Ok(other),
        }
    }

    /// Fills `buf` from the token's RNG (C_GenerateRandom).
    pub fn random(&self, buf: &mut [u8]) -> Result<(), TokenError> {
        token_op(TokenOp::Random, || {
            self.with_session(|s| s.generate_random_slice(buf).map_err(TokenError::from_ck))
        })
    }

    /// AES-256-GCM encryption under the KEK, inside the token.
    /// Returns ciphertext ‖ 16-byte tag.
    pub fn seal(
        &self,
        iv: &[u8; GCM_IV_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        token_op(TokenOp::Seal, || {
            self.with_key(Self::kek, |s, kek| {
                let mut iv = *iv;
                let params = GcmParams::new(&mut iv, aad, 128.into())?;
                s.encrypt(&Mechanism::AesGcm(params), kek, plaintext)
            })
        })?
        .map_err(TokenError::from_ck)
    }

    /// AES-256-GCM decryption under the KEK, inside the token. A wrong tag or
    /// AAD is [`TokenError::Unseal`] (SoftHSM2 reports it as
    /// CKR_GENERAL_ERROR, kryoptic as CKR_ENCRYPTED_DATA_INVALID).
    pub fn unseal(
        &self,
        iv: &[u8; GCM_IV_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        token_op(TokenOp::Unseal, || {
            self.with_key(Self::kek, |s, kek| {
                let mut iv = *iv;
                let params = GcmParams::new(&mut iv, aad, 128.into())?;
                s.decrypt(&Mechanism::AesGcm(params), kek, sealed)
                    .map(Zeroizing::new)
            })
        })?
        .map_err(|e| match e {
            CkError::Pkcs11(
                RvError::GeneralError
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange,
                _,
            ) => TokenError::Unseal,
            other => TokenError::from_ck(other),
        })
    }

    /// The preferred DKG transport public key (secp256k1 where the token
    /// has one, else P-256): what a node names alone.
    pub fn dkg_public_key(&self) -> Result<TransportKey, TokenError> {
        self.dkg_public_keys()?
            .into_iter()
            .next()
            .ok_or(TokenError::NotInitialized(DKG_P256_KEY_LABEL))
    }

    /// Every DKG transport public key on the token, in
    /// [`TransportCurve::PREFERENCE`] order.
    pub fn dkg_public_keys(&self) -> Result<Vec<TransportKey>, TokenError> {
        let mut keys = Vec::new();
        for curve in TransportCurve::PREFERENCE {
            match self.ec_public_key(dkg_key_label(curve)) {
                Ok(point) => keys.push(TransportKey::from_point(curve, &point).map_err(|_| {
                    TokenError::Unexpected {
                        what: "DKG transport key off its curve",
                    }
                })?),
                Err(TokenError::NotInitialized(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(keys)
    }

    /// The SEC1 point of the EC public key labelled `label`.
    fn ec_public_key(&self, label: &'static str) -> Result<Vec<u8>, TokenError> {
        self.with_session(|s| {
            let handle = find_one(s, &key_template(ObjectClass::PUBLIC_KEY, label))?
                .ok_or(TokenError::NotInitialized(label))?;
            let attrs = s
                .get_attributes(handle, &[AttributeType::EcPoint])
                .map_err(TokenError::from_ck)?;
            match attrs.first() {
                Some(Attribute::EcPoint(value)) => {
                    sec1_point(value)
                        .map(<[u8]>::to_vec)
                        .ok_or(TokenError::Unexpected {
                            what: "CKA_EC_POINT encoding",
                        })
                }
                _ => Err(TokenError::Unexpected {
                    what: "CKA_EC_POINT",
                }),
            }
        })
    }

    /// ECDH (CKM_ECDH1_DERIVE, no KDF) between this node's DKG transport
    /// private key on `peer`'s curve and `peer`. Returns the shared
    /// x-coordinate; callers must run a KDF over it.
    /// [`TokenError::NotInitialized`] when the token has no key on that curve.
    pub fn dkg_shared_secret(&self, peer: &TransportKey) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        token_op(TokenOp::Ecdh, || self.ecdh(peer))
    }

    fn ecdh(&self, peer: &TransportKey) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let curve = peer.curve();
        self.with_key(
            |t| t.dkg_private(curve),
            |s, private| {
                let params = Ecdh1DeriveParams::new(EcKdf::null(), peer.point());
                let derived = s.derive_key(
                    &Mechanism::Ecdh1Derive(params),
                    private,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::GENERIC_SECRET),
                        Attribute::ValueLen(32.into()),
                        Attribute::Token(false),
                        Attribute::Sensitive(false),
                        Attribute::Extractable(true),
                    ],
                )?;
                let value = s.get_attributes(derived, &[AttributeType::Value]);
                // The derived object is a session object; destroy it at once
                // rather than wait for the session to close.
                let _ = s.destroy_object(derived);
                match value?.into_iter().next() {
                    Some(Attribute::Value(v)) => Ok(Zeroizing::new(v)),
                    _ => Err(CkError::InvalidValue),
                }
            },
        )?
        .map_err(TokenError::from_ck)
    }

    /// Stores a sealed share of `generation` as a private data object.
    /// Refuses to overwrite.
    pub fn store_share(
        &self,
        key_id: &str,
        generation: u32,
        sealed: &[u8],
    ) -> Result<(), TokenError> {
        let label = share_label(key_id, generation);
        token_op(TokenOp::StoreShare, || {
            self.create_share_object(key_id, &label, sealed)
        })
    }

    fn create_share_object(
        &self,
        key_id: &str,
        label: &str,
        sealed: &[u8],
    ) -> Result<(), TokenError> {
        self.with_session(|s| {
            if find_one(s, &data_template(label))?.is_some() {
                return Err(TokenError::ShareExists(key_id.to_string()));
            }
            let mut template = data_template(label);
            template.extend([
                Attribute::Private(true),
                Attribute::Modifiable(false),
                Attribute::Value(sealed.to_vec()),
            ]);
            s.create_object(&template).map_err(TokenError::from_ck)?;
            Ok(())
        })
    }

    /// Destroys the token object holding `key_id`'s share of `generation`.
    /// Says whether there was one (destroying what is gone is not an error:
    /// a retried destruction must succeed).
    pub fn destroy_share(&self, key_id: &str, generation: u32) -> Result<bool, TokenError> {
        let label = share_label(key_id, generation);
        token_op(TokenOp::DestroyShare, || {
            self.with_session(|s| match find_one(s, &data_template(&label))? {
                Some(handle) => {
                    s.destroy_object(handle).map_err(TokenError::from_ck)?;
                    Ok(true)
                }
                None => Ok(false),
            })
        })
    }

    /// Reads every sealed share on the token.
    pub fn load_shares(&self) -> Result<Vec<StoredShare>, TokenError> {
        self.with_session(|s| {
            let handles = s
                .find_objects(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Token(true),
                    Attribute::Application(APPLICATION.into()),
                ])
                .map_err(TokenError::from_ck)?;
            let mut shares = Vec::new();
            for handle in handles {
                let attrs = s
                    .get_attributes(handle, &[AttributeType::Label, AttributeType::Value])
                    .map_err(TokenError::from_ck)?;
                let (mut label, mut value) = (None, None);
                for attr in attrs {
                    match attr {
                        Attribute::Label(l) => label = Some(l),
                        Attribute::Value(v) => value = Some(v),
                        _ => {}
                    }
                }
                let Some(key_id) = label
                    .as_deref()
                    .and_then(|l| std::str::from_utf8(l).ok())
                    .and_then(|l| l.strip_prefix(SHARE_LABEL_PREFIX))
                    .map(|l| l.split_once('@').map_or(l, |(key_id, _)| key_id))
                else {
                    continue;
                };
                let sealed = value.ok_or(TokenError::Unexpected {
                    what: "share object without CKA_VALUE",
                })?;
                shares.push(StoredShare {
                    key_id: key_id.to_string(),
                    sealed,
                });
            }
            Ok(shares)
        })
    }

    /// CKA_ID of the KEK: bound into every sealed share so a blob sealed under
    /// one KEK is never mistaken for one sealed under another.
    pub fn kek_id(&self) -> Result<Vec<u8>, TokenError> {
        let kek = self.kek()?;
        self.with_session(|s| {
            match s
                .get_attributes(kek, &[AttributeType::Id])
                .map_err(TokenError::from_ck)?
                .into_iter()
                .next()
            {
                Some(Attribute::Id(id)) => Ok(id),
                _ => Err(TokenError::Unexpected {
                    what: "KEK without CKA_ID",
                }),
            }
        })
    }
}

/// What an EC private key may do: exactly one thing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    Derive,
    Sign,
}

/// Whether a key pair generation's `rv` says the token does not make keys
/// on the asked curve: CKR_CURVE_NOT_SUPPORTED and CKR_DOMAIN_PARAMS_INVALID
/// are the standard answers; CKR_ATTRIBUTE_VALUE_INVALID and
/// CKR_TEMPLATE_INCONSISTENT name the CKA_EC_PARAMS; kryoptic 1.5 answers
/// secp256k1 with CKR_GENERAL_ERROR.
fn curve_refused(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::CurveNotSupported
            | RvError::DomainParamsInvalid
            | RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent
            | RvError::GeneralError
    )
}

/// Generates an EC key pair on the curve `oid`, labelled `label`, whose
/// private half is sensitive, non-extractable and allowed only `usage`.
fn generate_ec_pair(s: &Session, label: &str, oid: &[u8], usage: KeyUse) -> Result<(), CkError> {
    let id = s.generate_random_vec(16)?;
    let sign = usage == KeyUse::Sign;
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::EcParams(oid.to_vec()),
            Attribute::Label(label.into()),
            Attribute::Id(id.clone()),
            Attribute::Verify(sign),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
        ],
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(sign),
            Attribute::Derive(!sign),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Modifiable(false),
            Attribute::Label(label.into()),
            Attribute::Id(id),
        ],
    )?;
    Ok(())
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, TokenError> {
    for slot in ctx.get_slots_with_token().map_err(TokenError::from_ck)? {
        let info = ctx.get_token_info(slot).map_err(TokenError::from_ck)?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(TokenError::TokenNotFound(label.to_string()))
}

fn key_template(class: ObjectClass, label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(class),
        Attribute::Token(true),
        Attribute::Label(label.into()),
    ]
}

fn data_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Application(APPLICATION.into()),
        Attribute::Label(label.into()),
    ]
}

fn find_one(s: &Session, template: &[Attribute]) -> Result<Option<ObjectHandle>, TokenError> {
    let found = s.find_objects(template).map_err(TokenError::from_ck)?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        _ => Err(TokenError::Unexpected {
            what: "duplicate objects with one label",
        }),
    }
}

/// The SEC1 point in a CKA_EC_POINT value. PKCS#11 says it is a DER OCTET
/// STRING around the point (SoftHSM2 does so); kryoptic gives the raw point
/// by default. An uncompressed 256-bit point (65 bytes, 0x04 first) is never
/// also a well-formed OCTET STRING of one (whose length byte would have to
/// be 63, which no SEC1 point has), so the two forms cannot be confused.
fn sec1_point(value: &[u8]) -> Option<&[u8]> {
    let sec1 = |p: &[u8]| {
        (p.len() == 65 && p[0] == 0x04) || (p.len() == 33 && matches!(p[0], 0x02 | 0x03))
    };
    let inner = match value {
        [0x04, len, rest @ ..] if (*len as usize) == rest.len() && *len < 0x80 => Some(rest),
        [0x04, 0x81, len, rest @ ..] if (*len as usize) == rest.len() => Some(rest),
        _ => None,
    };
    match inner {
        Some(point) if sec1(point) => Some(point),
        _ if sec1(value) => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_reads_der_wrapped_and_raw_points() {
        let point = [4u8; 65];
        let mut short = vec![0x04, 65];
        short.extend_from_slice(&point);
        assert_eq!(sec1_point(&short), Some(&point[..]));
        let mut long = vec![0x04, 0x81, 65];
        long.extend_from_slice(&point);
        assert_eq!(sec1_point(&long), Some(&point[..]));
        // kryoptic's raw form.
        assert_eq!(sec1_point(&point), Some(&point[..]));
        let compressed = [[2u8].as_slice(), &[9u8; 32]].concat();
        assert_eq!(sec1_point(&compressed), Some(&compressed[..]));
        assert_eq!(sec1_point(&[0x04, 3, 1]), None);
        assert_eq!(sec1_point(&[0x04, 3, 1, 2, 3]), None);
        assert_eq!(sec1_point(&[]), None);
    }

    #[test]
    fn config_debug_hides_pin() {
        let config = TokenConfig {
            module: "/x.so".into(),
            token_label: "t".into(),
            pin: SecretString::from("246810"),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("246810"));
        assert!(shown.contains("<redacted>"));
    }
}
