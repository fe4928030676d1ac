//! A call's direction relative to the site: inbound, outbound, internal or unknown, from the
//! addresses of its initial INVITE (the SIP signalling endpoints: the packet's source and
//! destination IP) and the site's networks (config `capture.local_networks` and
//! `capture.trunk_networks`, or `record --local-net` / `--trunk-net`). Pure.
//!
//! An address is *local* when it is inside a local network and not inside a trunk network (a
//! trunk network names the SIP trunks, SBCs or carrier gateways that stand for the outside
//! world even when they sit on the site's LAN). With only trunk networks configured, every
//! address that is not a trunk is local. Then: INVITE from local to remote = outbound, from
//! remote to local = inbound, local to local = internal, remote to remote (traffic passing
//! through the capture point) = unknown; nothing configured = unknown.

use std::net::IpAddr;
use std::str::FromStr;

/// A call's direction: the manifest's own type.
pub use tapfleet_schemas::CallDirection;

/// An IPv4 or IPv6 network, `address/prefix` (a bare address is a host: /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network does not parse; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or network (e.g. 10.0.0.0/8, 2001:db8::/32)")]
    Address(String),
    #[error("{0:?}: the prefix length must be 0..={1}")]
    Prefix(String, u8),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let (a, p) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| CidrError::Address(s.to_owned()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| CidrError::Prefix(s.to_owned(), max))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: u128, b: u128, width: u32| {
            let shift = width - u32::from(self.prefix);
            // prefix 0: every address (a shift by the full width would overflow).
            shift >= width || (a >> shift) == (b >> shift)
        };
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                bits(u128::from(u32::from(n)), u128::from(u32::from(a)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => bits(u128::from(n), u128::from(a), 128),
            _ => false,
        }
    }
}

/// Parses each of `list`; the error names the field and the entry, e.g.
/// `capture.local_networks[1]: "10.0.0.0/33": the prefix length must be 0..=32`.
pub fn parse_networks(field: &str, list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| s.parse().map_err(|e| format!("{field}[{i}]: {e}")))
        .collect()
}

/// The site's networks, which classify calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteNetworks {
    pub local: Vec<Cidr>,
    pub trunks: Vec<Cidr>,
}

impl SiteNetworks {
    /// From the config's strings (`capture.local_networks`, `capture.trunk_networks`).
    pub fn parse(local: &[String], trunks: &[String]) -> Result<Self, String> {
        Ok(SiteNetworks {
            local: parse_networks("capture.local_networks", local)?,
            trunks: parse_networks("capture.trunk_networks", trunks)?,
        })
    }

    /// Nothing configured: every call is `Unknown`.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.trunks.is_empty()
    }

    /// Whether `ip` is inside the site.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        !self.trunks.iter().any(|n| n.contains(ip))
            && (self.local.is_empty() || self.local.iter().any(|n| n.contains(ip)))
    }

    /// The direction of a call whose initial INVITE went from `src` to `dst`.
    pub fn classify(&self, src: IpAddr, dst: IpAddr) -> CallDirection {
        if self.is_empty() {
            return CallDirection::Unknown;
        }
        match (self.is_local(src), self.is_local(dst)) {
            (true, false) => CallDirection::Outbound,
            (false, true) => CallDirection::Inbound,
            (true, true) => CallDirection::Internal,
            (false, false) => CallDirection::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(local: &[&str], trunks: &[&str]) -> SiteNetworks {
        let own = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        SiteNetworks::parse(&own(local), &own(trunks)).expect("valid networks")
    }

    #[test]
    fn cidrs_parse_match_and_refuse_clearly() {
        let n: Cidr = "10.251.23.0/24".parse().expect("v4");
        assert!(n.contains(ip("10.251.23.139")) && !n.contains(ip("10.251.24.1")));
        assert!(n.contains(ip("::ffff:10.251.23.1")), "IPv4-mapped IPv6");
        assert!(!n.contains(ip("2001:db8::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("all v4");
        assert!(all.contains(ip("203.0.113.5")));
        let v6: Cidr = " 2001:db8::/32 ".parse().expect("v6");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let host: Cidr = "192.0.2.7".parse().expect("host");
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let all6: Cidr = "::/0".parse().expect("all v6");
        assert!(all6.contains(ip("2001:db8::1")));
        assert_eq!(
            parse_networks(
                "capture.local_networks",
                &["10.0.0.0/8".into(), "10.0.0.0/33".into()]
            ),
            Err(
                "capture.local_networks[1]: \"10.0.0.0/33\": the prefix length must be 0..=32"
                    .to_owned()
            )
        );
        for bad in [
            "",
            "10.0.0/8",
            "pbx.example.com",
            "10.0.0.0/",
            "::/129",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn direction_from_the_invites_addresses() {
        let lan = nets(&["10.0.0.0/8", "2001:db8:1::/48"], &[]);
        let (phone, pbx, carrier) = (ip("10.1.2.3"), ip("10.0.0.10"), ip("203.0.113.5"));
        assert_eq!(lan.classify(phone, carrier), CallDirection::Outbound);
        assert_eq!(lan.classify(carrier, pbx), CallDirection::Inbound);
        assert_eq!(lan.classify(phone, pbx), CallDirection::Internal);
        assert_eq!(
            lan.classify(carrier, ip("198.51.100.1")),
            CallDirection::Unknown
        );
        assert_eq!(
            lan.classify(ip("2001:db8:1::5"), ip("2001:db8:2::5")),
            CallDirection::Outbound
        );
        // An SBC on the LAN is the outside world: the PBX calling it is outbound.
        let sbc = ip("10.0.0.254");
        let site = nets(&["10.0.0.0/8"], &["10.0.0.254"]);
        assert_eq!(site.classify(pbx, sbc), CallDirection::Outbound);
        assert_eq!(site.classify(sbc, pbx), CallDirection::Inbound);
        // Only trunks: everything else is the site.
        let trunks = nets(&[], &["203.0.113.0/24"]);
        assert_eq!(trunks.classify(carrier, phone), CallDirection::Inbound);
        assert_eq!(trunks.classify(phone, pbx), CallDirection::Internal);
        assert_eq!(
            SiteNetworks::default().classify(phone, carrier),
            CallDirection::Unknown
        );
    }
}
