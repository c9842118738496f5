//! `[[routes]]`: which group a message goes to, from the submitting client, destination prefix,
//! source address and service type. Among the rules whose every condition holds, the longest
//! destination prefix wins, then the first written; no rule: the client's own `route`.

use crate::pdu::{Body, DestAddress, Pdu};

/// What a route looks at in one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keys<'a> {
    /// The submitting client's system_id.
    pub client: &'a str,
    /// source_addr
    pub source: &'a [u8],
    /// destination_addr (for submit_multi, the first SME address)
    pub destination: &'a [u8],
    /// service_type
    pub service_type: &'a [u8],
}

impl<'a> Keys<'a> {
    /// The keys of a submit_sm, data_sm or submit_multi from `client` (empty fields otherwise).
    pub fn of(client: &'a str, pdu: &'a Pdu) -> Keys<'a> {
        let (source, destination, service_type) = match &pdu.body {
            Body::SubmitSm(b) => (&b.source_addr, b.destination_addr.as_bytes(), &b.service_type),
            Body::DataSm(b) => (&b.source_addr, b.destination_addr.as_bytes(), &b.service_type),
            Body::SubmitMulti(b) => {
                let first = b.dest_addresses.iter().find_map(|d| match d {
                    DestAddress::Sme { destination_addr, .. } => Some(destination_addr.as_bytes()),
                    DestAddress::DistributionList { .. } => None,
                });
                (&b.source_addr, first.unwrap_or_default(), &b.service_type)
            }
            _ => {
                return Keys {
                    client,
                    ..Keys::default()
                }
            }
        };
        Keys {
            client,
            source: source.as_bytes(),
            destination,
            service_type: service_type.as_bytes(),
        }
    }
}

/// One rule, compiled: conditions as bytes, the group by index.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The group (index into the router's groups).
    pub group: usize,
    /// The client's system_id must be this.
    pub client: Option<String>,
    /// destination_addr must start with this.
    pub destination_prefix: Option<Vec<u8>>,
    /// source_addr must be this.
    pub source: Option<Vec<u8>>,
    /// service_type must be this.
    pub service_type: Option<Vec<u8>>,
}

impl Rule {
    fn matches(&self, k: &Keys<'_>) -> bool {
        self.client.as_deref().is_none_or(|c| c == k.client)
            && self
                .destination_prefix
                .as_deref()
                .is_none_or(|p| k.destination.starts_with(p))
            && self.source.as_deref().is_none_or(|s| s == k.source)
            && self.service_type.as_deref().is_none_or(|s| s == k.service_type)
    }
}

/// The group for a message: the matching rule with the longest destination prefix (the first
/// written among equals), `None` when no rule matches.
pub fn select(rules: &[Rule], keys: &Keys<'_>) -> Option<usize> {
    let mut best: Option<(usize, &Rule)> = None;
    for rule in rules.iter().filter(|r| r.matches(keys)) {
        let len = rule.destination_prefix.as_ref().map_or(0, Vec::len);
        if best.is_none_or(|(l, _)| len > l) {
            best = Some((len, rule));
        }
    }
    best.map(|(_, r)| r.group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(group: usize) -> Rule {
        Rule {
            group,
            client: None,
            destination_prefix: None,
            source: None,
            service_type: None,
        }
    }

    #[test]
    fn longest_prefix_then_first_written_every_condition_must_hold() {
        let rules = vec![
            Rule {
                client: Some("bank".into()),
                ..rule(1)
            },
            Rule {
                destination_prefix: Some(b"44".to_vec()),
                ..rule(2)
            },
            Rule {
                destination_prefix: Some(b"4477".to_vec()),
                ..rule(3)
            },
            Rule {
                destination_prefix: Some(b"4477".to_vec()),
                ..rule(4)
            },
            Rule {
                source: Some(b"ALERTS".to_vec()),
                service_type: Some(b"VMA".to_vec()),
                ..rule(5)
            },
        ];
        let k = |client, destination: &'static str, source: &'static str, service_type: &'static str| Keys {
            client,
            source: source.as_bytes(),
            destination: destination.as_bytes(),
            service_type: service_type.as_bytes(),
        };
        assert_eq!(select(&rules, &k("shop", "447700900123", "x", "")), Some(3));
        assert_eq!(select(&rules, &k("shop", "442000000000", "x", "")), Some(2));
        assert_eq!(select(&rules, &k("shop", "15550000000", "x", "")), None);
        // The client rule has no prefix: a matching prefix rule is longer and wins.
        assert_eq!(select(&rules, &k("bank", "15550000000", "x", "")), Some(1));
        assert_eq!(select(&rules, &k("bank", "447700900123", "x", "")), Some(3));
        assert_eq!(select(&rules, &k("shop", "1555", "ALERTS", "VMA")), Some(5));
        assert_eq!(select(&rules, &k("shop", "1555", "ALERTS", "")), None);
    }

    #[test]
    fn keys_come_from_the_submit() {
        let pdu = crate::esme::submit_sm("4477", "447700900123", b"hi", false);
        let keys = Keys::of("shop", &pdu);
        assert_eq!((keys.source, keys.destination), (&b"4477"[..], &b"447700900123"[..]));
        let other = Pdu::new(Body::EnquireLink);
        assert_eq!(Keys::of("shop", &other).destination, b"");
    }
}
