//! Who is on the other end of a served connection, named once per
//! connection.
//!
//! A TLS connection's client certificate is fixed at its handshake, yet a
//! gRPC connection carries many calls: parsing the certificate on every
//! call (as `tonic::Request::peer_certs` would have us do) repeats an X.509
//! parse per call for an answer that cannot change. [`PeerStream`] wraps an
//! established TLS stream with the [`Peer`] its certificate names, computed
//! once when the handshake ends; tonic hands that [`Peer`] to every call on
//! the connection as a request extension, where [`peer_name`] reads it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The peer of one served connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The remote address, when the socket knew it.
    pub remote: Option<SocketAddr>,
    /// The name its client certificate carries ([`crate::tls::identity`]):
    /// `None` when it presented none or the certificate names nothing.
    pub name: Option<Arc<str>>,
}

impl Peer {
    /// The peer of an established server-side TLS stream.
    pub fn of(stream: &TlsStream<TcpStream>) -> Peer {
        let (tcp, session) = stream.get_ref();
        Peer {
            remote: tcp.peer_addr().ok(),
            name: session
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(crate::tls::identity)
                .map(Arc::from),
        }
    }
}

/// An established TLS stream and the [`Peer`] it was established with.
pub struct PeerStream {
    stream: TlsStream<TcpStream>,
    peer: Peer,
}

impl PeerStream {
    /// Names the peer of `stream` (one certificate parse, here).
    pub fn new(stream: TlsStream<TcpStream>) -> PeerStream {
        let peer = Peer::of(&stream);
        PeerStream { stream, peer }
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The name the caller's certificate carries, for a call that came on a
/// [`PeerStream`]; `None` for a plaintext call or a nameless certificate.
pub fn peer_name<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .extensions()
        .get::<Peer>()
        .and_then(|p| p.name.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request as tonic hands it to an interceptor for a call on a
    /// connection with `peer`.
    fn request_from(peer: Peer) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(peer);
        request
    }

    #[test]
    fn peer_name_reads_the_connection_peer() {
        let named = request_from(Peer {
            remote: None,
            name: Some(Arc::from("wallet-service")),
        });
        assert_eq!(peer_name(&named), Some("wallet-service"));
        let nameless = request_from(Peer {
            remote: None,
            name: None,
        });
        assert_eq!(peer_name(&nameless), None);
        assert_eq!(peer_name(&tonic::Request::new(())), None);
    }
}
