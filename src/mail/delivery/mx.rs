//! Where mail for a domain goes (RFC 5321 §5.1): its MX hosts by
//! preference, each with its addresses; a domain without MX records is its
//! own host (the implicit MX); a null MX (RFC 7505) or a domain that does
//! not exist refuses for good. DNS through hickory-resolver with the
//! backend's resolver configuration (`mail.dns.resolvers`).

use std::net::IpAddr;

use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

/// A failed lookup.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MxError {
    /// The DNS did not answer, or answered with an error: try later.
    #[error("DNS lookup for {0} failed: {1}")]
    Temporary(String, String),
    /// The domain does not exist or takes no mail.
    #[error("{0}")]
    Permanent(String),
}

/// One MX host and its addresses (empty when they did not resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// The resolver of the delivery worker.
pub struct Mx {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Mx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mx")
    }
}

impl Mx {
    /// A resolver asking `resolvers` (`ip:port`), or the system's.
    pub fn new(resolvers: &[std::net::SocketAddr]) -> Mx {
        let (config, opts) = crate::mail::dkim::resolver_config(resolvers);
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        Mx { resolver }
    }

    /// The resolver itself (the MTA-STS lookups ask it too).
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// The hosts for `domain`, best first.
    pub async fn hosts(&self, domain: &str) -> Result<Vec<Host>, MxError> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        let names: Vec<String> = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(l) => {
                let mut mx: Vec<(u16, String)> = l
                    .iter()
                    .map(|m| (m.preference(), m.exchange().to_ascii()))
                    .collect();
                mx.sort();
                // RFC 7505: a single MX of "." says the domain takes no mail.
                if mx.len() == 1 && (mx[0].1 == "." || mx[0].1.is_empty()) {
                    return Err(MxError::Permanent(format!(
                        "{domain} accepts no mail (null MX)"
                    )));
                }
                mx.into_iter()
                    .map(|(_, n)| n.trim_end_matches('.').to_ascii_lowercase())
                    .filter(|n| !n.is_empty())
                    .collect()
            }
            Err(e) if e.is_nx_domain() => {
                return Err(MxError::Permanent(format!(
                    "domain {domain} does not exist"
                )));
            }
            Err(e) if e.is_no_records_found() => vec![domain.trim_end_matches('.').to_owned()],
            Err(e) => return Err(MxError::Temporary(domain.to_owned(), e.to_string())),
        };
        let mut out = Vec::with_capacity(names.len());
        let mut last_err = None;
        for name in names {
            match self.resolver.lookup_ip(format!("{name}.").as_str()).await {
                Ok(ips) => out.push(Host {
                    name,
                    addrs: ips.iter().collect(),
                }),
                Err(e) => {
                    last_err = Some(e.to_string());
                    out.push(Host {
                        name,
                        addrs: Vec::new(),
                    });
                }
            }
        }
        if out.iter().all(|h| h.addrs.is_empty()) {
            return Err(MxError::Temporary(
                domain.to_owned(),
                format!(
                    "no address for its mail hosts: {}",
                    last_err.unwrap_or_else(|| "none".into())
                ),
            ));
        }
        Ok(out)
    }
}
