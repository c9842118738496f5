//! Validation of what decides where a message goes: `[[groups]]` (members are upstreams or
//! other groups, no cycles), `[[routes]]` and `[routing]`. Every problem is reported with its
//! key, like the rest of the configuration.

use super::raw::{RawGroup, RawRoute, RawRouting};
use super::{ConcatFailover, Failback, Problems, Strategy};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Most members a group may have: the router chooses among them in arrays of this size on the
/// stack, without allocating per message.
pub const MAX_MEMBERS: usize = 16;

/// A routing group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// Its name.
    pub name: String,
    /// How members share traffic.
    pub strategy: Strategy,
    /// Upstream or group names; for `failover`, in order of preference.
    pub members: Vec<String>,
    /// Static caps on a member's share of the group's traffic (0..1), by member name.
    pub max_share: BTreeMap<String, f64>,
    /// How long a member that (re)joins takes to reach its full share.
    pub slow_start: Duration,
    /// Whether a failover group returns to a preferred member by itself.
    pub failback: Failback,
    /// How long a preferred member must stay healthy before traffic returns to it.
    pub failback_after: Duration,
}

impl GroupConfig {
    /// A load-balance group over `members` with the defaults (the implicit `default` group).
    pub fn load_balance(name: &str, members: Vec<String>) -> GroupConfig {
        GroupConfig {
            name: name.to_owned(),
            strategy: Strategy::LoadBalance,
            members,
            max_share: BTreeMap::new(),
            slow_start: Duration::from_secs(10),
            failback: Failback::Auto,
            failback_after: Duration::from_secs(30),
        }
    }
}

/// One `[[routes]]` rule: every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteConfig {
    /// The group matching messages go to.
    pub group: String,
    /// The submitting client's system_id.
    pub system_id: Option<String>,
    /// A prefix of destination_addr; among matching routes the longest wins.
    pub destination_prefix: Option<String>,
    /// source_addr, exactly.
    pub source_addr: Option<String>,
    /// service_type, exactly.
    pub service_type: Option<String>,
}

/// `[routing]`: settings shared by every group.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// What the remaining parts of a concatenated message do when their upstream is lost.
    pub concat_failover: ConcatFailover,
    /// How long the parts of one message are kept together.
    pub concat_ttl: Duration,
    /// Share of link errors (timeouts, ESME_RSYSERR) over a second that ejects an upstream.
    pub eject_error_rate: f64,
    /// How long an ejected upstream stays out before it re-enters with slow start.
    pub eject_for: Duration,
}

pub(super) fn groups(raw: &[RawGroup], upstreams: &HashSet<String>, p: &mut Problems) -> BTreeMap<String, GroupConfig> {
    let mut groups = BTreeMap::new();
    for (n, g) in raw.iter().enumerate() {
        let key = |field: &str| format!("groups[{n}].{field}");
        if groups.contains_key(&g.name) {
            p.add(key("name"), format!("{:?} is used twice", g.name));
        }
        if upstreams.contains(&g.name) {
            p.add(key("name"), format!("{:?} is also an upstream's name", g.name));
        }
        if g.members.is_empty() {
            p.add(key("members"), "must list at least one upstream or group");
        }
        if g.members.len() > MAX_MEMBERS {
            p.add(key("members"), format!("at most {} members", MAX_MEMBERS));
        }
        let mut seen = HashSet::new();
        for (m, member) in g.members.iter().enumerate() {
            if !upstreams.contains(member) && !raw.iter().any(|o| &o.name == member) {
                p.add(
                    format!("groups[{n}].members[{m}]"),
                    format!("no upstream or group is called {member:?}"),
                );
            }
            if !seen.insert(member) {
                p.add(
                    format!("groups[{n}].members[{m}]"),
                    format!("{member:?} is listed twice"),
                );
            }
        }
        for (member, share) in &g.max_share {
            if !g.members.contains(member) {
                p.add(key("max_share"), format!("{member:?} is not a member"));
            }
            if !(*share > 0.0 && *share <= 1.0) {
                p.add(key("max_share"), format!("{member:?}: {share} is not in (0, 1]"));
            }
        }
        if !g.max_share.is_empty() && g.strategy != Strategy::LoadBalance {
            p.add(key("max_share"), "only load-balance groups have shares");
        }
        groups.insert(
            g.name.clone(),
            GroupConfig {
                name: g.name.clone(),
                strategy: g.strategy,
                members: g.members.clone(),
                max_share: g.max_share.clone(),
                slow_start: p.duration(&key("slow_start"), &g.slow_start),
                failback: g.failback,
                failback_after: p.duration(&key("failback_after"), &g.failback_after),
            },
        );
    }
    for (n, g) in raw.iter().enumerate() {
        if let Some(cycle) = cycle_from(&g.name, &groups) {
            p.add(
                format!("groups[{n}].members"),
                format!("groups contain each other: {cycle}"),
            );
        }
    }
    groups
}

/// `a -> b -> a` when group `start` contains itself, through any depth.
fn cycle_from(start: &str, groups: &BTreeMap<String, GroupConfig>) -> Option<String> {
    fn walk<'a>(name: &'a str, groups: &'a BTreeMap<String, GroupConfig>, path: &mut Vec<&'a str>) -> bool {
        let Some(g) = groups.get(name) else { return false };
        for m in &g.members {
            if m == path[0] {
                path.push(m);
                return true;
            }
            if !path.contains(&m.as_str()) && groups.contains_key(m) {
                path.push(m);
                if walk(m, groups, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    walk(start, groups, &mut path).then(|| path.join(" -> "))
}

pub(super) fn routes(
    raw: &[RawRoute],
    groups: &BTreeMap<String, GroupConfig>,
    clients: &HashSet<&str>,
    p: &mut Problems,
) -> Vec<RouteConfig> {
    raw.iter()
        .enumerate()
        .map(|(n, r)| {
            if !groups.contains_key(&r.group) {
                p.add(
                    format!("routes[{n}].group"),
                    format!("no group is called {:?}", r.group),
                );
            }
            if let Some(id) = &r.system_id {
                if !clients.contains(id.as_str()) {
                    p.add(
                        format!("routes[{n}].system_id"),
                        format!("no client has system_id {id:?}"),
                    );
                }
            }
            RouteConfig {
                group: r.group.clone(),
                system_id: r.system_id.clone(),
                destination_prefix: r.destination_prefix.clone(),
                source_addr: r.source_addr.clone(),
                service_type: r.service_type.clone(),
            }
        })
        .collect()
}

pub(super) fn routing(raw: &RawRouting, p: &mut Problems) -> RoutingConfig {
    if !(raw.eject_error_rate > 0.0 && raw.eject_error_rate <= 1.0) {
        p.add(
            "routing.eject_error_rate",
            format!("{} is not in (0, 1]", raw.eject_error_rate),
        );
    }
    RoutingConfig {
        concat_failover: raw.concat_failover,
        concat_ttl: p.duration("routing.concat_ttl", &raw.concat_ttl),
        eject_error_rate: raw.eject_error_rate,
        eject_for: p.duration("routing.eject_for", &raw.eject_for),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Failback, Strategy};
    use std::time::Duration;

    /// The minimal configuration (upstream `smsc-a`) with upstreams `b` and `c` added.
    fn base() -> String {
        let more = ["b", "c"].map(|n| {
            format!("[[upstreams]]\nname = \"{n}\"\naddress = \"127.0.0.1:1\"\nsystem_id = \"p\"\npassword = \"p\"\n")
        });
        format!("{}\n{}", crate::config::tests::MINIMAL, more.concat())
    }

    #[test]
    fn groups_nest_routes_and_routing_settings_parse() {
        let text = format!(
            r#"{}
            [[groups]]
            name = "ab"
            members = ["smsc-a", "b"]
            max_share = {{ "smsc-a" = 0.7 }}
            slow_start = "5s"
            [[groups]]
            name = "default"
            strategy = "failover"
            members = ["ab", "c"]
            failback = "manual"
            failback_after = "1m"
            [[routes]]
            group = "ab"
            destination_prefix = "4477"
            system_id = "shop"
            [routing]
            concat_failover = "reject"
            concat_ttl = "1m"
            eject_error_rate = 0.3
            eject_for = "20s"
            "#,
            base()
        );
        let c = Config::from_toml(&text).unwrap();
        let d = &c.groups["default"];
        assert_eq!(
            (d.strategy, d.failback, d.failback_after),
            (Strategy::Failover, Failback::Manual, Duration::from_secs(60))
        );
        assert_eq!(c.groups["ab"].max_share["smsc-a"], 0.7);
        assert_eq!(c.groups["ab"].slow_start, Duration::from_secs(5));
        assert_eq!(c.routes[0].destination_prefix.as_deref(), Some("4477"));
        assert_eq!(c.routing.eject_for, Duration::from_secs(20));
        assert_eq!(c.routing.concat_failover, crate::config::ConcatFailover::Reject);
    }

    #[test]
    fn every_routing_problem_is_listed_with_its_key() {
        let text = format!(
            r#"{}
            [[groups]]
            name = "x"
            members = ["y", "smsc-a", "smsc-a"]
            max_share = {{ c = 2.0 }}
            [[groups]]
            name = "y"
            strategy = "failover"
            members = ["x", "nowhere"]
            max_share = {{ x = 0.5 }}
            [[groups]]
            name = "b"
            members = ["smsc-a"]
            [[routes]]
            group = "ghost"
            system_id = "nobody"
            [routing]
            eject_error_rate = 1.5
            eject_for = "soon"
            "#,
            base()
        );
        let e = Config::from_toml(&text).unwrap_err().to_string();
        for want in [
            "groups[0].members[2]: \"smsc-a\" is listed twice",
            "groups[0].max_share: \"c\" is not a member",
            "groups[0].max_share: \"c\": 2 is not in (0, 1]",
            "groups[1].members[1]: no upstream or group is called \"nowhere\"",
            "groups[1].max_share: only load-balance groups have shares",
            "groups[0].members: groups contain each other: x -> y -> x",
            "groups[2].name: \"b\" is also an upstream's name",
            "routes[0].group: no group is called \"ghost\"",
            "routes[0].system_id: no client has system_id \"nobody\"",
            "routing.eject_error_rate: 1.5 is not in (0, 1]",
            "routing.eject_for: \"soon\" is not a duration",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }
}
