//! A policy as the fleet serves it ([`Envelope`]): the text of one version of a
//! policy, the assignment it is served under (group, serial, mode), and the
//! fleet's Ed25519 signature over all of it. A host applies it only when the key
//! it pinned (`[fleet] public_key`) verifies the signature, the assignment is its
//! group's, and the serial is not older than the one in force (no rollback by
//! replay); the text is then checked like any policy file (docs/fleet.md).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{
    diag::Diagnostic,
    model::{Mode, Policy},
};

/// What every signed message starts with: a signature made for anything else
/// never verifies as a policy's.
const CONTEXT: &[u8] = b"guard fleet policy v1\0";

/// One version of a policy, assigned to a group, signed by the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The group the assignment is for.
    pub group: String,
    /// The group's assignment counter: every change of its policy, version or
    /// mode takes the next one.
    pub serial: u64,
    /// The policy's name in the fleet, and which of its versions this is.
    pub policy: String,
    pub version: u64,
    /// `observe` or `enforce`: the rollout's stage for this group.
    pub mode: String,
    /// The policy file, as it was uploaded.
    pub text: String,
    /// Ed25519 over [`Envelope::message`], in base64.
    pub signature: String,
}

/// Why a served policy is not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the host's own policy has no [fleet] section: it takes no policy from a fleet")]
    NoFleet,
    #[error(
        "the signature is not the fleet key's (a policy not signed by the key in [fleet] public_key, or changed after signing)"
    )]
    Signature,
    #[error("the assignment is group {got:?}'s, this host is in group {expected:?}")]
    OtherGroup { expected: String, got: String },
    #[error("assignment {got} is older than assignment {current} in force (a replay)")]
    Older { current: u64, got: u64 },
    #[error("mode {0:?} is neither observe nor enforce")]
    Mode(String),
    #[error("policy {name} version {version} has errors:\n{rendered}")]
    Invalid {
        name: String,
        version: u64,
        rendered: String,
    },
}

impl Envelope {
    /// The bytes signed: the context, then each field, length first (no two
    /// different envelopes sign the same bytes).
    pub fn message(&self) -> Vec<u8> {
        let mut out = CONTEXT.to_vec();
        let serial = self.serial.to_string();
        let version = self.version.to_string();
        for field in [
            self.group.as_str(),
            &serial,
            &self.policy,
            &version,
            &self.mode,
            &self.text,
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    /// Signs the envelope with `sign` (the fleet's key), filling `signature`.
    pub fn sign(mut self, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Self {
        self.signature = base64::engine::general_purpose::STANDARD.encode(sign(&self.message()));
        self
    }

    /// The name a policy from the fleet has in events and views.
    pub fn name(&self) -> String {
        format!("fleet:{}@{}", self.policy, self.version)
    }

    /// Checks the signature against the pinned `key`, that the assignment is
    /// `group`'s and not older than `current` (the serial in force, if any).
    pub fn verify(
        &self,
        key: &[u8; 32],
        group: &str,
        current: Option<u64>,
    ) -> Result<Mode, Refused> {
        let signature = base64::engine::general_purpose::STANDARD
            .decode(self.signature.trim())
            .map_err(|_| Refused::Signature)?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
            .verify(&self.message(), &signature)
            .map_err(|_| Refused::Signature)?;
        if self.group != group {
            return Err(Refused::OtherGroup {
                expected: group.to_owned(),
                got: self.group.clone(),
            });
        }
        if let Some(current) = current.filter(|c| self.serial < *c) {
            return Err(Refused::Older {
                current,
                got: self.serial,
            });
        }
        match self.mode.as_str() {
            "observe" => Ok(Mode::Observe),
            "enforce" => Ok(Mode::Enforce),
            other => Err(Refused::Mode(other.to_owned())),
        }
    }

    /// The policy in force under this envelope on a host whose own file is
    /// `local`: the served text, checked, in the envelope's mode, with the host's
    /// own `[fleet]` and `[export]` (how it reaches the fleet is never the served
    /// policy's to change).
    pub fn policy(&self, mode: Mode, local: &Policy) -> Result<(Policy, Vec<Diagnostic>), Refused> {
        let name = self.name();
        let (mut policy, warnings) =
            crate::parse::parse(&name, &self.text).map_err(|diags| Refused::Invalid {
                rendered: crate::diag::render(&name, &diags),
                name: self.policy.clone(),
                version: self.version,
            })?;
        policy.mode = mode;
        policy.fleet.clone_from(&local.fleet);
        policy.export.clone_from(&local.export);
        Ok((policy, warnings))
    }
}

#[cfg(test)]
mod tests {
    use ring::{
        rand::SystemRandom,
        signature::{Ed25519KeyPair, KeyPair as _},
    };

    use super::*;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("a key");
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("the key")
    }

    fn envelope(key: &Ed25519KeyPair) -> Envelope {
        Envelope {
            group: "ci-runners".into(),
            serial: 3,
            policy: "ci".into(),
            version: 2,
            mode: "observe".into(),
            text: crate::builtin::get("ci").expect("ci").to_owned(),
            signature: String::new(),
        }
        .sign(|m| key.sign(m).as_ref().to_vec())
    }

    fn public(key: &Ed25519KeyPair) -> [u8; 32] {
        key.public_key().as_ref().try_into().expect("32 bytes")
    }

    #[test]
    fn a_signed_envelope_verifies_and_every_change_breaks_it() {
        let k = key();
        let env = envelope(&k);
        assert_eq!(
            env.verify(&public(&k), "ci-runners", Some(3)),
            Ok(Mode::Observe)
        );
        let changes: [fn(&mut Envelope); 6] = [
            |e| e.text.push_str("\n# one more line\n"),
            |e| e.mode = "enforce".into(),
            |e| e.version += 1,
            |e| e.serial += 1,
            |e| e.policy = "workstation".into(),
            |e| e.group = "laptops".into(),
        ];
        for change in changes {
            let mut e = env.clone();
            change(&mut e);
            assert_eq!(
                e.verify(&public(&k), &e.group.clone(), None),
                Err(Refused::Signature),
                "{e:?}"
            );
        }
        // Another key's signature, and no signature at all.
        assert_eq!(
            env.verify(&public(&key()), "ci-runners", None),
            Err(Refused::Signature)
        );
        let mut unsigned = env;
        unsigned.signature.clear();
        assert_eq!(
            unsigned.verify(&public(&k), "ci-runners", None),
            Err(Refused::Signature)
        );
    }

    #[test]
    fn another_group_s_or_an_older_assignment_is_refused() {
        let k = key();
        let env = envelope(&k);
        assert!(matches!(
            env.verify(&public(&k), "laptops", None),
            Err(Refused::OtherGroup { .. })
        ));
        assert_eq!(
            env.verify(&public(&k), "ci-runners", Some(4)),
            Err(Refused::Older { current: 4, got: 3 })
        );
    }

    #[test]
    fn the_served_policy_keeps_the_host_s_own_fleet_and_export() {
        let k = key();
        let mut env = envelope(&k);
        env.text
            .push_str("\n[export]\nendpoint = \"https://elsewhere.example/v1/logs\"\n");
        let (local, _) = crate::parse::parse(
            "local.toml",
            "[fleet]\npolicy_url = \"https://fleet.example/v1/policy\"\n\
             public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n\
             [export]\nendpoint = \"https://fleet.example/v1/logs\"\n",
        )
        .expect("a valid local policy");
        let (policy, _) = env.policy(Mode::Observe, &local).expect("valid");
        assert_eq!(policy.name, "fleet:ci@2");
        assert_eq!(policy.mode, Mode::Observe);
        assert_eq!(policy.fleet, local.fleet);
        assert_eq!(
            policy.export.endpoint.as_deref(),
            Some("https://fleet.example/v1/logs")
        );
        env.text = "[[rule]]\nid = \"x\"\nkind = \"nonsense\"\n".into();
        assert!(matches!(
            env.policy(Mode::Enforce, &local),
            Err(Refused::Invalid { version: 2, .. })
        ));
    }
}
