//! A TCP relay that delivers everything a server sends a fixed time late:
//! how `ringi bench` measures signing with one signer answering slowly (a
//! far site, a busy token) without changing the signer. TLS passes through
//! untouched (the coordinator checks the signer's name, not its address),
//! and bytes keep their order: each chunk read from the server is written
//! to the client `delay` after it was read.
//!
//! A benchmarking aid only: it listens on loopback, for this process's
//! lifetime.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Starts a relay on a loopback port to `upstream`, delaying the server's
/// side by `delay`; returns the address to dial instead of `upstream`.
pub async fn start(upstream: String, delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(&upstream).await {
                    relay(client, server, delay).await;
                }
            });
        }
    });
    Ok(address)
}

/// Relays one connection until either side closes it.
async fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if client_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server sends arrives complete, in order, and no sooner
    /// than the delay; what the client sends is not held.
    #[tokio::test]
    async fn server_bytes_arrive_late_and_in_order() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = server.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut got = [0u8; 4];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
            for chunk in [&b"one "[..], b"two ", b"three"] {
                s.write_all(chunk).await.unwrap();
            }
        });
        let proxy = start(upstream, Duration::from_millis(150)).await.unwrap();
        let mut c = TcpStream::connect(proxy).await.unwrap();
        let sent = std::time::Instant::now();
        c.write_all(b"ping").await.unwrap();
        let mut answer = Vec::new();
        c.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"one two three");
        assert!(sent.elapsed() >= Duration::from_millis(150));
    }
}
