//! CloudStack's rule string (pure).
//!
//! The agent builds it in `SecurityGroupRulesCmd.stringifyRules()`: for each
//! rule `I:` or `E:`, the protocol, `;`, start port (or ICMP type), `;`, end
//! port (or ICMP code), `;`, every CIDR followed by `,`, then `NEXT `; then
//! `LibvirtComputingResource.addNetworkRules` replaces every space by `;`:
//! `I:tcp;22;22;0.0.0.0/0,::/0,NEXT;E:udp;53;53;0.0.0.0/0,NEXT;`.
//! security_group.py's `parse_network_rules` splits on `NEXT;`, drops what
//! follows the last one, splits each rule on the first three `;`, and sorts the
//! comma-separated CIDRs by family (empty ones, as after the last comma, are
//! skipped). The form without a comma before `NEXT` parses the same.
//!
//! Where security_group.py silently skips what it cannot read (a rule with too
//! few fields, a CIDR that is not one), this parser refuses the whole string, so
//! that a typo never installs fewer rules than meant. Spaces are read as `;`
//! (the agent's own replacement), and a final `NEXT` without `;` is accepted.

use std::net::IpAddr;

use ipnet::IpNet;

use super::model::{Direction, Match, Protocol, Rule, RuleSet};

/// Why a rule string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {index} `{rule}`: {why}")]
pub struct ParseError {
    /// 1-based position of the rule in the string.
    pub index: usize,
    /// The rule's text (printable).
    pub rule: String,
    pub why: String,
}

/// Parses CloudStack's rule string; the empty string is no rule (CloudStack's default).
pub fn parse_rules(text: &str) -> Result<RuleSet, ParseError> {
    let text = text.trim().replace(' ', ";");
    let mut rules = Vec::new();
    let mut pieces: Vec<&str> = text.split("NEXT;").collect();
    let last = pieces.pop().unwrap_or("");
    // A final `NEXT` without `;` ends a rule too; anything else after the last
    // `NEXT;` is a rule that was not terminated.
    if let Some(rule) = last.strip_suffix("NEXT") {
        pieces.push(rule);
    } else if !last.trim_matches(';').is_empty() {
        return Err(ParseError {
            index: pieces.len() + 1,
            rule: crate::plan::printable(last).into_owned(),
            why: "it does not end with NEXT; (rules look like I:tcp;22;22;0.0.0.0/0,NEXT;)".into(),
        });
    }
    for (i, piece) in pieces.iter().enumerate() {
        rules.push(parse_rule(piece).map_err(|why| ParseError {
            index: i + 1,
            rule: crate::plan::printable(piece).into_owned(),
            why,
        })?);
    }
    Ok(RuleSet { rules })
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let fields: Vec<&str> = text.splitn(4, ';').collect();
    let [head, start, end, cidrs] = fields[..] else {
        return Err(
            "it has fewer than four fields (TYPE:PROTOCOL;START;END;CIDR,CIDR,...)".to_string(),
        );
    };
    let (kind, protocol) = head
        .split_once(':')
        .ok_or("the first field is not TYPE:PROTOCOL (e.g. I:tcp)")?;
    let direction = match kind {
        "I" => Direction::Ingress,
        "E" => Direction::Egress,
        other => {
            return Err(format!(
                "unknown rule type {:?} (I for ingress, E for egress)",
                crate::plan::printable(other)
            ))
        }
    };
    let protocol = parse_protocol(protocol)?;
    let start = parse_int(start, "start port or ICMP type")?;
    let end = parse_int(end, "end port or ICMP code")?;
    let matches = parse_match(protocol, start, end)?;
    let (mut ipv4, mut ipv6) = (Vec::new(), Vec::new());
    for cidr in cidrs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        match parse_cidr(cidr)? {
            IpNet::V4(n) => ipv4.push(n),
            IpNet::V6(n) => ipv6.push(n),
        }
    }
    Ok(Rule {
        direction,
        protocol,
        matches,
        ipv4: ipnet::Ipv4Net::aggregate(&ipv4),
        ipv6: ipnet::Ipv6Net::aggregate(&ipv6),
    })
}

fn parse_protocol(p: &str) -> Result<Protocol, String> {
    Ok(match p.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        "all" => Protocol::All,
        n => match n.parse::<u8>() {
            Ok(n) => Protocol::Number(n),
            Err(_) => {
                return Err(format!(
                    "unknown protocol {:?} (tcp, udp, icmp, all or a protocol number 0 to 255)",
                    crate::plan::printable(p)
                ))
            }
        },
    })
}

fn parse_int(field: &str, what: &str) -> Result<i64, String> {
    field.trim().parse::<i64>().map_err(|_| {
        format!(
            "the {what} {:?} is not a number",
            crate::plan::printable(field)
        )
    })
}

fn parse_match(protocol: Protocol, start: i64, end: i64) -> Result<Match, String> {
    match protocol {
        Protocol::Tcp | Protocol::Udp => {
            if start == 0 && end == 0 {
                return Ok(Match::Any);
            }
            let port = |p: i64| {
                u16::try_from(p).map_err(|_| format!("port {p} is out of range (0 to 65535)"))
            };
            let (first, last) = (port(start)?, port(end)?);
            if first > last {
                return Err(format!("the port range {first}-{last} is reversed"));
            }
            Ok(Match::Ports { first, last })
        }
        Protocol::Icmp => {
            let value = |v: i64, what: &str| match v {
                -1 => Ok(None),
                0..=255 => Ok(Some(v as u8)),
                _ => Err(format!(
                    "ICMP {what} {v} is out of range (-1 for any, 0 to 255)"
                )),
            };
            let r#type = value(start, "type")?;
            let code = value(end, "code")?;
            if r#type.is_none() && code.is_some() {
                return Err("an ICMP code needs an ICMP type (type -1 is any)".to_string());
            }
            Ok(Match::Icmp { r#type, code })
        }
        Protocol::All | Protocol::Number(_) => Ok(Match::Any),
    }
}

fn parse_cidr(cidr: &str) -> Result<IpNet, String> {
    // security_group.py reads them with ipaddress.ip_network(cidr, strict=False):
    // host bits are allowed (and cleared here), a bare address is a host network.
    let net = cidr
        .parse::<IpNet>()
        .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "{:?} is not an IPv4 or IPv6 network in CIDR notation",
                crate::plan::printable(cidr)
            )
        })?;
    Ok(net.trunc())
}
