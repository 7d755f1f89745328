//! Where a peer domain listens (RFC 6120 §3.2.1, XEP-0368).
//!
//! 1. A static route from `[s2s.routes]` wins.
//! 2. Otherwise the SRV records `_xmpps-server._tcp.<domain>` (direct TLS, XEP-0368) and
//!    `_xmpp-server._tcp.<domain>` (STARTTLS) are merged and ordered by RFC 2782: lowest
//!    priority first; within a priority, a random order weighted by `weight`. A single record
//!    with target "." means the domain offers no service: nothing is tried.
//! 3. Without SRV records, the domain itself on port 5269 with STARTTLS.
//!
//! Host names are then resolved by the system resolver, so the hosts file applies.

use super::S2sError;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::SocketAddr;
use std::time::Duration;

/// One place to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

/// An SRV record as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Without the trailing dot; "." stays "." (no service).
    pub target: String,
    pub direct_tls: bool,
}

/// The DNS resolver for SRV lookups: the system's configuration, or the servers given in
/// `[s2s] dns_servers`. `None` when none can be set up (then only the fallback is used).
pub fn resolver(servers: &[SocketAddr]) -> Option<TokioResolver> {
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().ok()?
    } else {
        let configs = servers
            .iter()
            .map(|addr| {
                let mut config = NameServerConfig::udp(addr.ip());
                for connection in &mut config.connections {
                    connection.port = addr.port();
                }
                config
            })
            .collect();
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(configs), TokioRuntimeProvider::default())
    };
    // A dead resolver must not hold a link for long: the A/AAAA fallback still works.
    builder.options_mut().timeout = Duration::from_secs(2);
    builder.options_mut().attempts = 1;
    builder.build().ok()
}

/// The SRV records of both services for `domain` (none when the lookups fail).
pub async fn srv_records(resolver: &TokioResolver, domain: &str) -> Vec<SrvRecord> {
    let mut records = Vec::new();
    for (service, direct_tls) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
        let Ok(found) = resolver.srv_lookup(format!("{service}.{domain}.")).await else { continue };
        for record in found.answers() {
            if let RData::SRV(srv) = &record.data {
                let target = srv.target.to_utf8();
                let target = if target == "." { target } else { target.trim_end_matches('.').to_owned() };
                let (priority, weight, port) = (srv.priority, srv.weight, srv.port);
                records.push(SrvRecord { priority, weight, port, target, direct_tls });
            }
        }
    }
    records
}

/// Orders SRV records into targets (RFC 2782); `roll(total)` picks a number in `0..=total`
/// (random in use, fixed in tests). `Err` when the domain says it has no service.
pub fn order(
    mut records: Vec<SrvRecord>,
    domain: &str,
    mut roll: impl FnMut(u32) -> u32,
) -> Result<Vec<Target>, S2sError> {
    if records.len() == 1 && records[0].target == "." {
        return Err(S2sError::Unreachable(format!("{domain} offers no server-to-server service")));
    }
    records.retain(|r| r.target != ".");
    if records.is_empty() {
        return Ok(vec![Target { host: domain.to_owned(), port: 5269, direct_tls: false }]);
    }
    records.sort_by_key(|r| r.priority);
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let same = records.iter().take_while(|r| r.priority == priority).count();
        let mut group: Vec<SrvRecord> = records.drain(..same).collect();
        // RFC 2782: zero-weight records first, then pick by running sum of weights.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = roll(total);
            let mut running = 0;
            let index = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            let chosen = group.remove(index);
            ordered.push(Target { host: chosen.target, port: chosen.port, direct_tls: chosen.direct_tls });
        }
    }
    Ok(ordered)
}

/// A random number in `0..=total` for [`order`].
pub fn random_roll(total: u32) -> u32 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0;
    }
    u32::from_le_bytes(bytes) % (total + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str, direct_tls: bool) -> SrvRecord {
        SrvRecord { priority, weight, port: 5269, target: target.to_owned(), direct_tls }
    }

    #[test]
    fn lower_priority_first_and_weight_decides_within_one() {
        let records = vec![
            srv(20, 0, "backup.example", false),
            srv(10, 60, "big.example", false),
            srv(10, 40, "small.example", true),
        ];
        // A roll of 100 lands past the first 60: the second record of the group comes first.
        let hosts: Vec<String> =
            order(records.clone(), "example", |total| total).unwrap().into_iter().map(|t| t.host).collect();
        assert_eq!(hosts, ["small.example", "big.example", "backup.example"]);
        let hosts: Vec<String> = order(records, "example", |_| 1).unwrap().into_iter().map(|t| t.host).collect();
        assert_eq!(hosts, ["big.example", "small.example", "backup.example"]);
    }

    #[test]
    fn no_records_fall_back_and_a_dot_means_no_service() {
        let fallback = order(vec![], "example.net", random_roll).unwrap();
        assert_eq!(fallback, [Target { host: "example.net".into(), port: 5269, direct_tls: false }]);
        assert!(order(vec![srv(0, 0, ".", false)], "example.net", random_roll).is_err());
    }
}
