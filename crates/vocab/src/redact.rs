//! A database URL without its password, for messages and logs: `postgres://u:***@h/db`, and
//! `password=***` in the key=value form.

/// The URL (or key=value connection string) with any password replaced by `***`.
#[must_use]
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let (head, rest) = url.split_at(scheme_end + 3);
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = rest.get(..auth_end).unwrap_or(rest);
        if let Some(at) = authority.rfind('@') {
            let userinfo = authority.get(..at).unwrap_or_default();
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{head}{}:***{}",
                    userinfo.get(..colon).unwrap_or_default(),
                    rest.get(at..).unwrap_or_default()
                );
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/tg?sslmode=require"),
            "postgres://app:***@db:5432/tg?sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/tg"), "postgres://app@db/tg");
        assert_eq!(
            redact_url("postgres://db/tg?user=a@b"),
            "postgres://db/tg?user=a@b"
        );
        assert_eq!(
            redact_url("host=h password=secret user=u"),
            "host=h password=*** user=u"
        );
    }
}
