//! BIRD 2 configurations: a small tokenizer and what `routing-config` asks of them.

use std::collections::{BTreeMap, HashMap};

/// BIRD configuration tokens: comments removed, words and punctuation split.
fn bird_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
            out.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | ':' | '/'))
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c.is_whitespace() {
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if matches!(two.as_str(), "!=" | "<=" | ">=" | "!~" | "&&" | "||") {
                out.push(two);
                i += 2;
            } else {
                out.push(c.to_string());
                i += 1;
            }
        }
    }
    out
}

/// The tokens of the `{ ... }` block whose `{` is at or after `from`, and the index after it.
fn block(tokens: &[String], from: usize) -> Option<(&[String], usize)> {
    let open = from + tokens[from..].iter().position(|t| t == "{")?;
    let mut depth = 0;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        if t == "{" {
            depth += 1;
        } else if t == "}" {
            depth -= 1;
            if depth == 0 {
                return Some((&tokens[open + 1..j], j + 1));
            }
        }
    }
    None
}

/// Whether an import expression (or a filter body) accepts routes of protocol `proto`
/// by `krt_source`.
fn selects_source(tokens: &[String], proto: u8, defines: &HashMap<String, String>) -> bool {
    let value = |t: &str| -> Option<u8> {
        t.parse()
            .ok()
            .or_else(|| defines.get(t).and_then(|v| v.parse().ok()))
    };
    tokens.windows(3).enumerate().any(|(i, w)| {
        w[0] == "krt_source"
            && ((w[1] == "=" && value(&w[2]) == Some(proto))
                || (w[1] == "~"
                    && w[2] == "["
                    && tokens[i + 3..]
                        .iter()
                        .take_while(|t| *t != "]")
                        .any(|t| value(t) == Some(proto))))
    })
}

/// What `bird_selects` needs of a BIRD configuration's top level.
#[derive(Default)]
struct Top {
    /// `define NAME = VALUE;`
    defines: HashMap<String, String>,
    /// `filter NAME { ... }`: the body's tokens.
    filters: HashMap<String, Vec<String>>,
    /// The bodies of the `protocol kernel` blocks.
    kernels: Vec<Vec<String>>,
    /// Some `protocol bgp` exports something (`export` not followed by `none`).
    bgp_exports: bool,
}

fn top_level(tokens: &[String]) -> Top {
    let mut top = Top::default();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "define" if i + 3 < tokens.len() && tokens[i + 2] == "=" => {
                top.defines
                    .insert(tokens[i + 1].clone(), tokens[i + 3].clone());
                i += 4;
            }
            "filter" if i + 2 < tokens.len() && tokens[i + 2] == "{" => {
                if let Some((body, next)) = block(tokens, i + 2) {
                    top.filters.insert(tokens[i + 1].clone(), body.to_vec());
                    i = next;
                } else {
                    i += 1;
                }
            }
            "protocol" if i + 1 < tokens.len() => {
                let kind = tokens[i + 1].clone();
                match block(tokens, i + 1) {
                    Some((body, next)) => {
                        if kind == "kernel" {
                            top.kernels.push(body.to_vec());
                        } else if kind == "bgp" {
                            top.bgp_exports |=
                                body.windows(2).any(|w| w[0] == "export" && w[1] != "none");
                        }
                        i = next;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    top
}

/// Whether kernel protocol body `k` (with `learn`) imports the routes of protocol
/// `proto` in its channel of family `fam` (`ipv4`, `ipv6`).
fn kernel_imports(k: &[String], fam: &str, proto: u8, top: &Top) -> bool {
    let Some(pos) = k.iter().position(|t| t == fam) else {
        return false;
    };
    let channel: &[String] = match block(k, pos) {
        Some((b, _)) if k.get(pos + 1).map(String::as_str) == Some("{") => b,
        _ => return false,
    };
    let Some(imp) = channel.iter().position(|t| t == "import") else {
        return false;
    };
    let rest = &channel[imp + 1..];
    let stmt: Vec<String> = match rest.first().map(String::as_str) {
        Some("all") => return true,
        Some("filter") if rest.get(1).map(String::as_str) == Some("{") => {
            block(rest, 1).map(|(b, _)| b.to_vec()).unwrap_or_default()
        }
        Some("filter") => rest
            .get(1)
            .and_then(|n| top.filters.get(n))
            .cloned()
            .unwrap_or_default(),
        _ => rest.iter().take_while(|t| *t != ";").cloned().collect(),
    };
    selects_source(&stmt, proto, &top.defines)
}

/// Checks a BIRD 2 configuration: a kernel protocol with `learn` importing the routes of
/// protocol `proto` for each family, and a BGP protocol that exports something.
pub fn bird_selects(text: &str, proto: u8) -> Result<(), String> {
    let tokens = bird_tokens(text);
    let top = top_level(&tokens);
    let mut families = BTreeMap::from([("ipv4", false), ("ipv6", false)]);
    for k in &top.kernels {
        let learn = k
            .windows(2)
            .any(|w| w[0] == "learn" && !matches!(w[1].as_str(), "off" | "no"));
        if !learn {
            continue;
        }
        for fam in ["ipv4", "ipv6"] {
            if kernel_imports(k, fam, proto, &top) {
                families.insert(fam, true);
            }
        }
    }
    let missing: Vec<&str> = families
        .iter()
        .filter(|(_, v)| !**v)
        .map(|(f, _)| *f)
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "no kernel protocol with `learn` imports krt_source = {proto} for {}",
            missing.join(" and ")
        ));
    }
    if !top.bgp_exports {
        problems.push("no BGP protocol exports routes".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_BIRD: &str = include_str!("../../../packaging/examples/bird.conf");

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shipped_example_passes() {
        assert_eq!(bird_selects(EXAMPLE_BIRD, 52), Ok(()));
    }

    #[test]
    fn bird_without_the_protocol_filter_fails() {
        let t = EXAMPLE_BIRD.replace("krt_source = VIRT_L3_PROTO", "krt_source = 53");
        let e = bird_selects(&t, 52).unwrap_err();
        assert!(e.contains("ipv4 and ipv6"), "{e}");
        let t = EXAMPLE_BIRD.replace("  learn;\n", "");
        assert!(bird_selects(&t, 52).is_err());
        // Another protocol number configured in virt-l3 than in BIRD.
        assert!(bird_selects(EXAMPLE_BIRD, 60).is_err());
    }

    #[test]
    fn bird_comments_do_not_count() {
        let t =
            "protocol kernel k { ipv4 { import none; # import where krt_source = 52;\n }; learn; }";
        assert!(bird_selects(t, 52).is_err());
        let t = "protocol kernel k4 { ipv4 { import where krt_source ~ [ 52, 53 ]; }; learn; }\n\
                 protocol kernel k6 { ipv6 { import filter f; }; learn; }\n\
                 filter f { if krt_source = 52 then accept; reject; }\n\
                 protocol bgp up { ipv4 { export all; }; }";
        assert_eq!(bird_selects(t, 52), Ok(()));
    }

    #[test]
    fn tokens() {
        assert_eq!(
            bird_tokens(
                "define P = 52; /* x { */ a != \"s # t\" # c\nkrt_source ~ [ 10.0.0.0/8 ];"
            ),
            strings(&[
                "define",
                "P",
                "=",
                "52",
                ";",
                "a",
                "!=",
                "\"s # t\"",
                "krt_source",
                "~",
                "[",
                "10.0.0.0/8",
                "]",
                ";"
            ])
        );
        // An unterminated comment or string ends the text.
        assert_eq!(bird_tokens("a /* b"), strings(&["a"]));
        assert_eq!(bird_tokens("a \"b"), strings(&["a", "\"b"]));
    }

    #[test]
    fn blocks() {
        let t = strings(&["x", "{", "a", "{", "b", "}", "}", "y"]);
        let (body, next) = block(&t, 0).unwrap();
        assert_eq!(body, &t[2..6]);
        assert_eq!(next, 7);
        assert!(block(&strings(&["x", "{", "a"]), 0).is_none());
        assert!(block(&strings(&["x"]), 0).is_none());
    }

    #[test]
    fn source_selection() {
        let defines = HashMap::from([("P".to_string(), "52".to_string())]);
        let sel = |t: &str| selects_source(&bird_tokens(t), 52, &defines);
        assert!(sel("where krt_source = 52"));
        assert!(sel("where krt_source = P"));
        assert!(sel("where krt_source ~ [ 1, P ]"));
        assert!(!sel("where krt_source ~ [ 1, 2 ] && x = 52"));
        assert!(!sel("where krt_source != 52"));
    }

    #[test]
    fn only_learning_kernel_protocols_count() {
        let t = "protocol kernel k { ipv4 { import all; }; ipv6 { import all; }; learn off; }\n\
                 protocol bgp up { ipv4 { export all; }; }";
        let e = bird_selects(t, 52).unwrap_err();
        assert!(e.contains("ipv4 and ipv6"), "{e}");
        let t = t.replace("learn off", "learn");
        assert_eq!(bird_selects(&t, 52), Ok(()));
        let t = t.replace("export all", "export none");
        assert_eq!(
            bird_selects(&t, 52),
            Err("no BGP protocol exports routes".to_string())
        );
    }
}
