//! The multicast UDP socket of an xAAL bus: joins the group, sends and receives raw datagrams.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::MAX_DATAGRAM;

/// Kernel buffer asked for in each direction: a burst of a few hundred datagrams (every device
/// answering an `is_alive` at once) must not be dropped while the source awaits the publisher.
const BUFFER_BYTES: usize = 1024 * 1024;

/// A socket joined to one group.
#[derive(Debug)]
pub(crate) struct BusSocket {
    socket: UdpSocket,
    group: SocketAddrV4,
}

impl BusSocket {
    /// Binds `0.0.0.0:<port>` with `SO_REUSEADDR` and `SO_REUSEPORT` (every xAAL process on the
    /// host binds the same port, and each gets a copy of every multicast datagram), joins
    /// `group` on `interface`, and loops our own datagrams back so that other processes on this
    /// host hear us. Must be called within a Tokio runtime.
    pub(crate) fn join(
        group: SocketAddrV4,
        interface: Ipv4Addr,
        hops: u32,
    ) -> io::Result<BusSocket> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        // Best effort: the kernel caps them at net.core.{r,w}mem_max.
        let _ = socket.set_recv_buffer_size(BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(BUFFER_BYTES);
        socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, group.port())).into())?;
        socket.join_multicast_v4(group.ip(), &interface)?;
        socket.set_multicast_loop_v4(true)?;
        socket.set_multicast_ttl_v4(hops)?;
        if !interface.is_unspecified() {
            socket.set_multicast_if_v4(&interface)?;
        }
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        Ok(BusSocket { socket, group })
    }

    /// Sends one datagram to the group.
    pub(crate) async fn send(&self, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, self.group).await.map(|_| ())
    }

    /// Receives one datagram into `buf` (at least [`MAX_DATAGRAM`] + 1 bytes, so that an
    /// oversized one is seen as such rather than silently truncated to a valid length).
    pub(crate) async fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<(&'a [u8], SocketAddr)> {
        debug_assert!(buf.len() > MAX_DATAGRAM);
        let (n, peer) = self.socket.recv_from(buf).await?;
        Ok((&buf[..n], peer))
    }

    pub(crate) fn group(&self) -> SocketAddrV4 {
        self.group
    }
}
