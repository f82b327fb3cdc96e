//! Why a domain is refused: every problem, each with the NIC or metadata element
//! it concerns, shown on one line.

use std::fmt;

use super::text::{display_name, printable};

/// One reason a domain is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// "NIC 52:54:00:aa:bb:cc on cloudbr0", or the metadata element concerned.
    pub nic: Option<String>,
    pub text: String,
}

/// How many of a refused domain's problems its error message lists.
pub const MAX_PROBLEMS_SHOWN: usize = 10;

/// A domain virt-l3 refuses, with every reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanError {
    pub domain: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for PlanError {
    /// One line: control characters the XML carried (in a name, a MAC) are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        self.write_to(&mut line)?;
        f.write_str(&printable(&line))
    }
}

impl PlanError {
    fn write_to(&self, f: &mut impl fmt::Write) -> fmt::Result {
        write!(f, "virt-l3 refuses domain {}: ", display_name(&self.domain))?;
        let mut last: Option<&Option<String>> = None;
        for (i, p) in self.problems.iter().enumerate() {
            if i == MAX_PROBLEMS_SHOWN {
                // A hostile domain may have thousands of NICs: the operator sees a line.
                let more = self.problems.len() - i;
                return write!(
                    f,
                    "; and {more} more problem{}",
                    if more == 1 { "" } else { "s" }
                );
            }
            if i > 0 {
                write!(f, "; ")?;
            }
            // Consecutive problems of one NIC share its label.
            match (&p.nic, last == Some(&p.nic)) {
                (Some(nic), false) => write!(f, "{nic}: {}", p.text)?,
                _ => write!(f, "{}", p.text)?,
            }
            last = Some(&p.nic);
        }
        Ok(())
    }
}

/// The problems found so far, and the NIC or element being looked at.
#[derive(Debug, Default)]
pub(super) struct Collector {
    pub problems: Vec<Problem>,
    pub nic: Option<String>,
}

impl Collector {
    /// Records a problem of the current NIC or element.
    pub fn refuse(&mut self, text: impl Into<String>) {
        self.problems.push(Problem {
            nic: self.nic.clone(),
            text: text.into(),
        });
    }

    /// Records `text` if there is one; says whether it did.
    pub fn refused(&mut self, text: Option<String>) -> bool {
        match text {
            Some(t) => {
                self.refuse(t);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(nic: Option<&str>, text: &str) -> Problem {
        Problem {
            nic: nic.map(str::to_string),
            text: text.to_string(),
        }
    }

    #[test]
    fn consecutive_problems_of_one_nic_share_its_label() {
        let e = PlanError {
            domain: "web".into(),
            problems: vec![
                problem(None, "the domain XML has no <uuid>"),
                problem(Some("NIC a"), "one"),
                problem(Some("NIC a"), "two"),
                problem(Some("NIC b"), "three"),
            ],
        };
        assert_eq!(
            e.to_string(),
            "virt-l3 refuses domain web: the domain XML has no <uuid>; NIC a: one; two; NIC b: three"
        );
    }

    #[test]
    fn long_lists_are_cut_and_control_characters_escaped() {
        let problems = (0..MAX_PROBLEMS_SHOWN + 2)
            .map(|i| problem(Some("NIC\n"), &format!("p{i}")))
            .collect();
        let e = PlanError {
            domain: "web".into(),
            problems,
        };
        let s = e.to_string();
        assert!(
            s.starts_with("virt-l3 refuses domain web: NIC\\n: p0; p1;"),
            "{s}"
        );
        assert!(s.ends_with("; p9; and 2 more problems"), "{s}");
        let one_more = PlanError {
            domain: "web".into(),
            problems: (0..=MAX_PROBLEMS_SHOWN)
                .map(|_| problem(None, "x"))
                .collect(),
        };
        assert!(one_more.to_string().ends_with("; and 1 more problem"));
    }

    #[test]
    fn collector_labels_with_the_current_nic() {
        let mut c = Collector {
            nic: Some("NIC a".into()),
            ..Collector::default()
        };
        assert!(!c.refused(None));
        assert!(c.refused(Some("bad".into())));
        assert_eq!(c.problems, [problem(Some("NIC a"), "bad")]);
    }
}
