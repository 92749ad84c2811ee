//! guard's resolver in one network namespace: UDP and TCP on a loopback port
//! (127.0.0.1 and ::1), where the kernel points sessions' DNS. Each query is
//! judged by name (`policy::dns`, the decision the judge makes on the same query):
//! refused ones get NXDOMAIN and never leave; the rest go, byte for byte, to the
//! server the session asked when the network rules let it reach that server
//! itself, else to the upstream servers, and the answer comes back unchanged.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use guard_common::{AF_INET6, StubPeer};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream, UdpSocket},
    sync::{Semaphore, watch},
    task::JoinHandle,
};

use super::netns::Netns;
use crate::{
    ebpf::StubPeers,
    policy::dns::{Decision, DnsPolicy},
};

/// How long a forwarded query waits for its answer (glibc's own default timeout
/// per try is 5 s: the client retries before this gives up).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a TCP client may stay idle between messages.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries a resolver answers at once; more wait (UDP ones are dropped: the
/// client asks again).
const IN_FLIGHT: usize = 256;

/// What every namespace's resolver shares.
pub struct Shared {
    pub policy: watch::Receiver<Arc<DnsPolicy>>,
    /// Who sent each message (`None`: the map could not be taken; every query is
    /// judged as an untainted process's).
    pub peers: Option<StubPeers>,
    pub counts: Counts,
}

/// Queries by what became of them (the metrics' `guard_dns_resolver_queries_total`).
#[derive(Debug, Default)]
pub struct Counts {
    pub forwarded: AtomicU64,
    pub refused: AtomicU64,
    /// No server answered in time (the client got SERVFAIL).
    pub failed: AtomicU64,
    /// Not a DNS message the resolver could read (dropped), or past the resolver's
    /// queries in flight.
    pub dropped: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (forwarded, refused, failed, dropped).
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.forwarded.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        ]
    }
}

/// One namespace's resolver: its ports, and its tasks (stopped with it).
pub struct Stub {
    pub port4: u16,
    pub port6: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A namespace's resolver's context.
struct Ctx {
    ns: Netns,
    shared: Arc<Shared>,
    /// Where queries go when the session may not reach the server it asked.
    upstreams: Vec<SocketAddr>,
    slots: Arc<Semaphore>,
}

/// A UDP socket and a TCP listener on the same port of `ip`.
fn bind_pair(ip: IpAddr) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut last = None;
    for _ in 0..32 {
        let udp = std::net::UdpSocket::bind((ip, 0))?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind((ip, port)) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((udp, tcp));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port")))
}

impl Stub {
    /// Starts the resolver of namespace `ns`, forwarding to `upstreams` where the
    /// session may not reach the server it asked.
    pub async fn start(
        ns: Netns,
        shared: Arc<Shared>,
        upstreams: Vec<SocketAddr>,
    ) -> io::Result<Self> {
        let v4 = ns
            .run(|| bind_pair(IpAddr::V4(Ipv4Addr::LOCALHOST)))
            .await?;
        // A namespace without IPv6 on its loopback has no IPv6 resolver: the kernel
        // refuses IPv6 DNS there (or lets it through, as the policy says).
        let v6 = ns
            .run(|| bind_pair(IpAddr::V6(Ipv6Addr::LOCALHOST)))
            .await
            .ok();
        let ctx = Arc::new(Ctx {
            ns,
            shared,
            upstreams,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
        });
        let mut stub = Self {
            port4: 0,
            port6: 0,
            tasks: Vec::new(),
        };
        for (pair, port) in [(Some(v4), &mut stub.port4), (v6, &mut stub.port6)] {
            let Some((udp, tcp)) = pair else { continue };
            *port = udp.local_addr()?.port();
            let udp = Arc::new(UdpSocket::from_std(udp)?);
            let tcp = TcpListener::from_std(tcp)?;
            stub.tasks
                .push(tokio::spawn(serve_udp(udp, Arc::clone(&ctx))));
            stub.tasks
                .push(tokio::spawn(serve_tcp(tcp, Arc::clone(&ctx))));
        }
        Ok(stub)
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, ctx: Arc<Ctx>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("guard's resolver: receive failed: {e}");
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&ctx.slots).try_acquire_owned() else {
            Counts::add(&ctx.shared.counts.dropped);
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, ctx) = (Arc::clone(&sock), Arc::clone(&ctx));
        tokio::spawn(async move {
            let peer = ctx.peer(libc::IPPROTO_UDP, from.port());
            if let Some(answer) = ctx.answer(&query, peer, false).await {
                let _ = sock.send_to(&answer, from).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_conn(stream, from, Arc::clone(&ctx)));
    }
}

/// One TCP client: length-prefixed messages, answered in turn.
async fn serve_conn(mut stream: TcpStream, from: SocketAddr, ctx: Arc<Ctx>) {
    loop {
        let Ok(Ok(query)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await else {
            return;
        };
        let Ok(_permit) = ctx.slots.acquire().await else {
            return;
        };
        let peer = ctx.peer(libc::IPPROTO_TCP, from.port());
        let Some(answer) = ctx.answer(&query, peer, true).await else {
            return;
        };
        if write_framed(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}

async fn read_framed(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut msg = vec![0u8; usize::from(len)];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::Error::other("message over 64 KiB"))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await
}

/// A reply to `query` with no answers and response code `code`.
fn reply(query: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut m = Message::new(
        query.metadata.id,
        MessageType::Response,
        query.metadata.op_code,
    );
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.response_code = code;
    for q in &query.queries {
        m.add_query(q.clone());
    }
    m.to_vec().ok()
}

/// The server a peer sent its message to, before the kernel pointed it here.
fn original(peer: &StubPeer) -> SocketAddr {
    let o = &peer.orig;
    let ip = if o.family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(o.addr)).to_canonical()
    } else {
        IpAddr::V4(Ipv4Addr::new(o.addr[0], o.addr[1], o.addr[2], o.addr[3]))
    };
    SocketAddr::new(ip, o.port)
}

impl Ctx {
    fn peer(&self, protocol: i32, port: u16) -> Option<StubPeer> {
        self.shared.peers.as_ref()?.get(protocol as u16, port)
    }

    /// The answer to `query` from `peer` (`None`: nothing to send back).
    async fn answer(&self, query: &[u8], peer: Option<StubPeer>, tcp: bool) -> Option<Vec<u8>> {
        let counts = &self.shared.counts;
        let Ok(msg) = Message::from_vec(query) else {
            Counts::add(&counts.dropped);
            return None;
        };
        if msg.metadata.message_type != MessageType::Query {
            Counts::add(&counts.dropped);
            return None;
        }
        if msg.metadata.op_code != OpCode::Query || msg.queries.is_empty() {
            Counts::add(&counts.refused);
            return reply(&msg, ResponseCode::Refused);
        }
        let tainted = peer.is_some_and(|p| p.flags & guard_common::flags::TAINTED != 0);
        let policy = self.shared.policy.borrow().clone();
        let refused = msg.queries.iter().find_map(|q| {
            let name = q.name.to_ascii();
            match policy.decide(&name, tainted) {
                Decision::Forward => None,
                Decision::Refuse { rule } => Some((name, rule)),
            }
        });
        if let Some((name, rule)) = refused {
            tracing::debug!(pid = peer.map(|p| p.pid), rule = ?rule, "guard's resolver refused {name}");
            Counts::add(&counts.refused);
            return reply(&msg, ResponseCode::NXDomain);
        }
        let asked = peer.filter(|p| p.orig.allowed != 0).map(|p| original(&p));
        for server in asked.iter().chain(&self.upstreams) {
            let forwarded = if tcp {
                self.forward_tcp(query, *server).await
            } else {
                self.forward_udp(query, *server).await
            };
            match forwarded {
                Ok(answer) => {
                    Counts::add(&counts.forwarded);
                    return Some(answer);
                }
                Err(e) => tracing::debug!("guard's resolver: {server} did not answer: {e}"),
            }
        }
        Counts::add(&counts.failed);
        reply(&msg, ResponseCode::ServFail)
    }

    async fn forward_udp(&self, query: &[u8], to: SocketAddr) -> io::Result<Vec<u8>> {
        let sock = self
            .ns
            .run(move || {
                let any: SocketAddr = if to.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = std::net::UdpSocket::bind(any)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .await?;
        let sock = UdpSocket::from_std(sock)?;
        // Connected: only the server's datagrams are read.
        sock.connect(to).await?;
        sock.send(query).await?;
        let mut buf = vec![0u8; 65535];
        tokio::time::timeout(FORWARD_TIMEOUT, async {
            loop {
                let n = sock.recv(&mut buf).await?;
                // The same id: the answer to this query, not a stray one.
                if n >= 2 && buf[..2] == query[..2.min(query.len())] {
                    return Ok(buf[..n].to_vec());
                }
            }
        })
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }

    async fn forward_tcp(&self, query: &[u8], to: SocketAddr) -> io::Result<Vec<u8>> {
        let sock = self
            .ns
            .run(move || {
                if to.is_ipv4() {
                    TcpSocket::new_v4()
                } else {
                    TcpSocket::new_v6()
                }
            })
            .await?;
        tokio::time::timeout(FORWARD_TIMEOUT, async {
            let mut stream = sock.connect(to).await?;
            write_framed(&mut stream, query).await?;
            read_framed(&mut stream).await
        })
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::{
        op::Query,
        rr::{Name, RecordType},
    };

    #[test]
    fn a_refusal_echoes_the_question_with_nxdomain() {
        let mut q = Message::new(4242, MessageType::Query, OpCode::Query);
        q.metadata.recursion_desired = true;
        let name = Name::from_ascii("exfil.example.").expect("name");
        q.add_query(Query::query(name.clone(), RecordType::TXT));
        let bytes = reply(&q, ResponseCode::NXDomain).expect("encodes");
        let r = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(r.metadata.id, 4242);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.metadata.recursion_desired);
        assert_eq!(r.queries.len(), 1);
        assert_eq!(r.queries[0].name, name);
        assert!(r.answers.is_empty());
    }

    #[test]
    fn the_original_server_is_read_back_from_the_kernel_s_bytes() {
        let mut p = StubPeer::default();
        p.orig.family = guard_common::AF_INET;
        p.orig.addr[..4].copy_from_slice(&[10, 213, 7, 1]);
        p.orig.port = 53;
        assert_eq!(original(&p), "10.213.7.1:53".parse().expect("addr"));
        p.orig.family = AF_INET6;
        p.orig.addr = "::ffff:10.0.0.2"
            .parse::<Ipv6Addr>()
            .expect("addr")
            .octets();
        assert_eq!(original(&p), "10.0.0.2:53".parse().expect("addr"));
    }
}
