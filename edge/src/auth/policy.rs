//! Access policies: which identities may reach an app.
//!
//! A policy is a list of email patterns, the simplest form of an Access
//! "include" rule: an exact address, everyone at a domain, or everyone.

use std::fmt;

/// One entry of an app's `allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailPattern {
    /// `*`: any identity.
    Anyone,
    /// `*@example.com`: any address at that domain (lower case).
    Domain(String),
    /// `alice@example.com`: that address (lower case).
    Exact(String),
}

impl EmailPattern {
    /// Reads a pattern; the error says what a pattern must look like.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(EmailPattern::Anyone);
        }
        if let Some(domain) = text.strip_prefix("*@") {
            if is_valid_domain(domain) {
                return Ok(EmailPattern::Domain(domain.to_ascii_lowercase()));
            }
        } else if is_valid_email(text) {
            return Ok(EmailPattern::Exact(text.to_ascii_lowercase()));
        }
        Err(format!(
            "{text:?} is not an email pattern (use \"alice@example.com\", \"*@example.com\" or \"*\")"
        ))
    }

    /// Whether `email` falls under this pattern (case-insensitive).
    pub fn matches(&self, email: &str) -> bool {
        let email = email.trim().to_ascii_lowercase();
        match self {
            EmailPattern::Anyone => is_valid_email(&email),
            EmailPattern::Domain(domain) => email
                .rsplit_once('@')
                .is_some_and(|(local, d)| !local.is_empty() && d == domain),
            EmailPattern::Exact(exact) => email == *exact,
        }
    }
}

impl fmt::Display for EmailPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmailPattern::Anyone => f.write_str("*"),
            EmailPattern::Domain(d) => write!(f, "*@{d}"),
            EmailPattern::Exact(e) => f.write_str(e),
        }
    }
}

/// Whether any pattern of `allow` admits `email`.
pub(crate) fn allows(allow: &[EmailPattern], email: &str) -> bool {
    allow.iter().any(|p| p.matches(email))
}

/// A plausible email address: one `@`, a non-empty local part without spaces
/// or control characters, and a domain of dot-separated labels. It is not RFC
/// 5322; it keeps obvious typos and markup out of tokens and pages.
pub fn is_valid_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    text.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '@' | '<' | '>' | '"' | '\'' | '&'))
        && is_valid_domain(domain)
}

/// Dot-separated labels of letters, digits and `-`, none empty or longer
/// than 63, not starting or ending with `-`.
pub(crate) fn is_valid_domain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_documented() {
        let exact = EmailPattern::parse("Alice@Example.com").unwrap();
        assert!(exact.matches("alice@example.com"));
        assert!(exact.matches("ALICE@example.COM"));
        assert!(!exact.matches("bob@example.com"));

        let domain = EmailPattern::parse("*@example.com").unwrap();
        assert!(domain.matches("bob@example.com"));
        assert!(domain.matches("Bob@EXAMPLE.com"));
        assert!(!domain.matches("bob@example.com.evil"));
        assert!(!domain.matches("bob@sub.example.com"));
        assert!(!domain.matches("@example.com"));

        let anyone = EmailPattern::parse("*").unwrap();
        assert!(anyone.matches("x@y.z"));
        assert!(!anyone.matches("not an email"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_hint() {
        for bad in [
            "",
            "alice",
            "*@",
            "*@-x.com",
            "a@b@c",
            "**",
            "*.example.com",
        ] {
            let err = EmailPattern::parse(bad).unwrap_err();
            assert!(err.contains("*@example.com"), "{bad}: {err}");
        }
    }

    #[test]
    fn patterns_print_as_written() {
        for p in ["*", "*@example.com", "alice@example.com"] {
            assert_eq!(EmailPattern::parse(p).unwrap().to_string(), p);
        }
    }

    #[test]
    fn email_syntax() {
        assert!(is_valid_email("alice@example.com"));
        assert!(is_valid_email("a.b+c@x-y.example"));
        assert!(!is_valid_email("alice"));
        assert!(!is_valid_email("alice@"));
        assert!(!is_valid_email("@example.com"));
        assert!(!is_valid_email("a b@example.com"));
        assert!(!is_valid_email("<script>@example.com"));
        assert!(!is_valid_email("alice@exa mple.com"));
        assert!(!is_valid_email("alice@.com"));
    }

    #[test]
    fn allows_any_matching_pattern() {
        let allow = vec![
            EmailPattern::parse("alice@a.com").unwrap(),
            EmailPattern::parse("*@b.com").unwrap(),
        ];
        assert!(allows(&allow, "alice@a.com"));
        assert!(allows(&allow, "zed@b.com"));
        assert!(!allows(&allow, "bob@a.com"));
        assert!(!allows(&[], "alice@a.com"));
    }
}
