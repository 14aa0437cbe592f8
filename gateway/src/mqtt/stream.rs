//! A device's connection: plain TCP, or TLS over TCP (`serve --mqtts`). The session
//! reads and writes through this one type; the plain kind keeps the idle connection's
//! zero-buffer read (wait for readiness, then read), which a TLS stream cannot offer —
//! rustls holds its own buffers, and its plaintext may be ready with the socket idle.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A device's connection.
pub(super) enum DeviceStream {
    /// MQTT over TCP.
    Plain(TcpStream),
    /// MQTT over TLS.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl DeviceStream {
    /// Reads what has arrived into `buf` (0: the peer closed). Cancel-safe: a read
    /// abandoned in a `select!` loses no byte. The plain kind reserves room only once
    /// data is there, so an idle connection holds no buffer.
    pub(super) async fn read_some(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => loop {
                s.readable().await?;
                buf.reserve(2048);
                match s.try_read_buf(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            },
            Self::Tls(s) => {
                buf.reserve(2048);
                s.read_buf(buf).await
            }
        }
    }

    /// Reads into `buf` (room reserved by the caller).
    pub(super) async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read_buf(buf).await,
            Self::Tls(s) => s.read_buf(buf).await,
        }
    }

    /// Writes all of `bytes`.
    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.write_all(bytes).await,
            Self::Tls(s) => {
                s.write_all(bytes).await?;
                // rustls buffers records until flushed.
                s.flush().await
            }
        }
    }

    /// Closes the connection (a TLS close_notify first).
    pub(super) async fn shutdown(&mut self) {
        let _ = match self {
            Self::Plain(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
        };
    }
}
