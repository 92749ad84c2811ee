//! Who is talking: hosts that send records, people who look at the dashboard.
//!
//! Every decision here is a plain function of what the request presented (a bearer
//! token, a verified client certificate's name, a proxy's header) and the tokens
//! file, so the rules are tested without a server. The one rule that matters most:
//! a record's own `host.name` is never trusted over the identity the sender
//! authenticated as ([`Sender::host_for`]).

pub mod cert;
pub mod source;
pub mod tokens;

pub use tokens::{Scope, Token, Tokens};

/// The authenticated sender of a batch of records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// One host: a host-scoped token's name, or a client certificate's name.
    Host(String),
    /// A cluster's gateway or collector, sending for its hosts.
    Cluster(String),
}

/// Why a request was refused before its body was read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credential, or one that is not valid here: HTTP 401.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A valid credential that may not do this: HTTP 403.
    #[error("{0}")]
    Forbidden(&'static str),
}

impl Refusal {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            Self::Unauthorized(_) => axum::http::StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => axum::http::StatusCode::FORBIDDEN,
        }
    }
}

/// Why a resource's records are not stored under any host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Claim {
    /// A host's credential, and the records say they are another host's: HTTP 403,
    /// the whole request refused.
    #[error("records claim host.name `{claimed}`, the credential is host `{identity}`")]
    OtherHost { identity: String, claimed: String },
    /// A cluster's credential, and the resource names no valid host: its records
    /// are rejected (partial success).
    #[error("the resource has no valid host.name: {0}")]
    NoHost(&'static str),
}

impl Sender {
    /// The credential as a policy assignment names it: `host:NAME` or
    /// `cluster:NAME` (docs/fleet.md, "Policy from the fleet").
    pub fn assignment_target(&self) -> String {
        match self {
            Self::Host(name) => format!("host:{name}"),
            Self::Cluster(name) => format!("cluster:{name}"),
        }
    }

    /// The host identity the records of a resource claiming `claimed` (its
    /// `host.name`) are stored under.
    pub fn host_for(&self, claimed: Option<&str>) -> Result<String, Claim> {
        match self {
            // Host names are compared as DNS compares them: ASCII case aside.
            Self::Host(identity) => match claimed {
                Some(c) if c.eq_ignore_ascii_case(identity) => Ok(identity.clone()),
                other => Err(Claim::OtherHost {
                    identity: identity.clone(),
                    claimed: other.unwrap_or("(none)").to_owned(),
                }),
            },
            Self::Cluster(cluster) => {
                let claimed = claimed.ok_or(Claim::NoHost("missing"))?;
                tokens::check_name(claimed, Scope::Host).map_err(Claim::NoHost)?;
                Ok(format!("{cluster}/{claimed}"))
            }
        }
    }
}

/// The bearer token of an `Authorization` header's value, if it has one.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Who sent a batch: the token, when the request has an `Authorization` header;
/// else the verified client certificate's name. A host token together with a
/// certificate of another host is refused.
pub fn sender(
    tokens: &Tokens,
    authorization: Option<&str>,
    cert_name: Option<&str>,
) -> Result<Sender, Refusal> {
    let Some(authorization) = authorization else {
        return match cert_name {
            Some(name) => Ok(Sender::Host(name.to_owned())),
            None => Err(Refusal::Unauthorized(
                "no bearer token or client certificate",
            )),
        };
    };
    let presented = bearer(authorization).ok_or(Refusal::Unauthorized(
        "the Authorization header is not `Bearer <token>`",
    ))?;
    let token = tokens
        .verify(presented)
        .ok_or(Refusal::Unauthorized("unknown token"))?;
    match token.scope {
        Scope::Dashboard | Scope::Admin => Err(Refusal::Unauthorized(
            "a dashboard token cannot send records",
        )),
        Scope::Host => match cert_name {
            Some(cert) if !cert.eq_ignore_ascii_case(&token.name) => Err(Refusal::Forbidden(
                "the client certificate and the token name different hosts",
            )),
            _ => Ok(Sender::Host(token.name.clone())),
        },
        Scope::Cluster => Ok(Sender::Cluster(token.name.clone())),
    }
}

/// Someone allowed to look at the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    /// The dashboard token's name, or the user the proxy named.
    pub name: String,
    /// An `admin` token: may also upload policies and assign them.
    pub admin: bool,
}

/// Who is looking, from (in this order) a bearer header, the login cookie, or the
/// reverse proxy's header (only passed in when the configuration names one).
pub fn viewer(
    tokens: &Tokens,
    authorization: Option<&str>,
    cookie_token: Option<&str>,
    proxy_user: Option<&str>,
) -> Option<Viewer> {
    let dashboard_token = |t: &str| {
        tokens
            .verify(t)
            .filter(|t| matches!(t.scope, Scope::Dashboard | Scope::Admin))
            .map(|t| Viewer {
                name: t.name.clone(),
                admin: t.scope == Scope::Admin,
            })
    };
    if let Some(a) = authorization {
        // A wrong bearer token is not rescued by a cookie or a header.
        return bearer(a).and_then(dashboard_token);
    }
    if let Some(v) = cookie_token.and_then(dashboard_token) {
        return Some(v);
    }
    proxy_user
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.len() <= 256 && !u.chars().any(char::is_control))
        .map(|u| Viewer {
            name: u.to_owned(),
            admin: false,
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn tokens() -> Tokens {
        let text = [
            tokens::entry("build-01", Scope::Host, "host-tok"),
            tokens::entry("eu", Scope::Cluster, "cluster-tok"),
            tokens::entry("sec", Scope::Dashboard, "dash-tok"),
        ]
        .join("\n");
        Tokens::parse(Path::new("t"), &text).expect("tokens")
    }

    #[test]
    fn senders_are_their_token_or_their_certificate() {
        let t = tokens();
        assert_eq!(
            sender(&t, Some("Bearer host-tok"), None),
            Ok(Sender::Host("build-01".into()))
        );
        assert_eq!(
            sender(&t, Some("bearer  cluster-tok "), None),
            Ok(Sender::Cluster("eu".into()))
        );
        assert_eq!(
            sender(&t, None, Some("build-02")),
            Ok(Sender::Host("build-02".into()))
        );
        assert!(matches!(
            sender(&t, None, None),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            sender(&t, Some("Bearer nope"), None),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            sender(&t, Some("Basic aG9zdC10b2s="), None),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            sender(&t, Some("Bearer dash-tok"), None),
            Err(Refusal::Unauthorized(_))
        ));
        // A wrong token is not rescued by a good certificate.
        assert!(matches!(
            sender(&t, Some("Bearer nope"), Some("build-01")),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            sender(&t, Some("Bearer host-tok"), Some("build-02")),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn a_host_credential_stores_only_its_own_host() {
        let host = Sender::Host("build-01".into());
        assert_eq!(host.host_for(Some("build-01")), Ok("build-01".into()));
        assert_eq!(
            host.host_for(Some("BUILD-01")),
            Ok("build-01".into()),
            "stored as the identity"
        );
        assert!(matches!(
            host.host_for(Some("build-02")),
            Err(Claim::OtherHost { .. })
        ));
        assert!(matches!(host.host_for(None), Err(Claim::OtherHost { .. })));
        let cluster = Sender::Cluster("eu".into());
        assert_eq!(cluster.host_for(Some("node-7")), Ok("eu/node-7".into()));
        assert!(matches!(cluster.host_for(None), Err(Claim::NoHost(_))));
        // A cluster's host cannot pose as another cluster's (`eu/../us/x`).
        assert!(matches!(
            cluster.host_for(Some("../us/x")),
            Err(Claim::NoHost(_))
        ));
        assert!(matches!(
            cluster.host_for(Some("a b")),
            Err(Claim::NoHost(_))
        ));
    }

    #[test]
    fn viewers_need_a_dashboard_token_or_the_proxy() {
        let t = tokens();
        let v = |a, c, p| viewer(&t, a, c, p).map(|v| v.name);
        assert_eq!(v(Some("Bearer dash-tok"), None, None), Some("sec".into()));
        assert_eq!(v(None, Some("dash-tok"), None), Some("sec".into()));
        assert_eq!(
            v(None, None, Some("alice@example.org")),
            Some("alice@example.org".into())
        );
        assert_eq!(
            v(Some("Bearer host-tok"), None, None),
            None,
            "a host token cannot look"
        );
        assert_eq!(v(None, Some("cluster-tok"), None), None);
        assert_eq!(v(Some("Bearer bad"), Some("dash-tok"), None), None);
        assert_eq!(v(None, None, Some("  ")), None);
        assert_eq!(v(None, None, None), None);
    }
}
