//! Socket helpers: the loopback guard, source-address ranges, the fd limit, and non-blocking
//! connects from a chosen source address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Refuses a target outside 127.0.0.0/8 (and ::1) unless explicitly allowed.
pub fn check_target(addr: SocketAddr, allow_non_loopback: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || allow_non_loopback {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address; pass --allow-non-loopback to load a remote host"
        ))
    }
}

/// Parses `127.0.0.1-127.0.0.50` or a single address into the list of addresses.
pub fn parse_ip_range(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{a}: {e}"))?;
    let b: Ipv4Addr = b.trim().parse().map_err(|e| format!("{b}: {e}"))?;
    let (lo, hi) = (u32::from(a), u32::from(b));
    if hi < lo || hi - lo > 1 << 20 {
        return Err(format!("bad address range {s}"));
    }
    Ok((lo..=hi).map(Ipv4Addr::from).collect())
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid, owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// Starts a non-blocking connect to `target` from `source` (port chosen at connect time, so the
/// 4-tuple, not the source port alone, must be unique).
pub fn connect_from(
    source: Option<Ipv4Addr>,
    target: SocketAddr,
) -> io::Result<std::net::TcpStream> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let (Some(src), IpAddr::V4(_)) = (source, target.ip()) {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on an owned fd with a valid int option.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(sock.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_loopback_guard() {
        let r = parse_ip_range("127.0.0.1-127.0.0.3").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2], Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(parse_ip_range("127.0.0.9").unwrap().len(), 1);
        assert!(parse_ip_range("127.0.0.9-127.0.0.1").is_err());
        assert!(check_target("127.3.0.1:1935".parse().unwrap(), false).is_ok());
        assert!(check_target("10.0.0.1:1935".parse().unwrap(), false).is_err());
        assert!(check_target("10.0.0.1:1935".parse().unwrap(), true).is_ok());
    }
}
