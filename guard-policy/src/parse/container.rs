//! `[agents]` selectors: containers (`containers`) and cgroup globs (`cgroups`).

use globset::GlobBuilder;

use crate::model::{ContainerField, ContainerSelector};

/// A `[agents] containers` entry: `"*"`, a container id (prefix), or terms
/// `key=value` joined by `,` that must all hold.
pub(super) fn container_selector(text: &str) -> Result<ContainerSelector, String> {
    const HINT: &str = "write \"*\" (every container), a container id or its first 12 or more \
                        hex digits, or terms such as \"namespace=ci,name=agent\"";
    if text == "*" {
        return Ok(ContainerSelector::Any);
    }
    if !text.contains('=') {
        let hint = if text.bytes().all(|b| b.is_ascii_hexdigit()) {
            String::new()
        } else {
            format!(" (a container's name: \"name={text}\")")
        };
        return container_id_prefix(text)
            .map(|id| ContainerSelector::All(vec![(ContainerField::Id, id)]))
            .ok_or_else(|| format!("{text:?} does not choose a container: {HINT}{hint}"));
    }
    let mut terms = Vec::new();
    for term in text.split(',') {
        let Some((key, value)) = term.split_once('=') else {
            return Err(format!("{term:?} in {text:?} is not `key=value`: {HINT}"));
        };
        let (key, value) = (key.trim(), value.trim());
        let Some(&(_, field)) = ContainerField::ALL.iter().find(|(k, _)| *k == key) else {
            let keys: Vec<&str> = ContainerField::ALL.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown container key {key:?} in {text:?}; valid keys: {}",
                keys.join(", ")
            ));
        };
        let value = match field {
            ContainerField::Id => container_id_prefix(value).ok_or_else(|| {
                format!("`id={value}` is not a container id or its first 12 or more hex digits")
            })?,
            ContainerField::PodUid => {
                // The systemd cgroup driver writes pod uids with `_`; accept either.
                let uid = value.to_ascii_lowercase().replace('_', "-");
                if !crate::container::is_pod_uid(&uid) {
                    return Err(format!(
                        "`pod_uid={value}` is not a pod uid (as `kubectl get pod -o \
                         jsonpath='{{.metadata.uid}}'` prints it)"
                    ));
                }
                uid
            }
            _ => {
                if value.is_empty() {
                    return Err(format!("`{key}=` in {text:?} has no value"));
                }
                globset::Glob::new(value)
                    .map_err(|e| format!("bad glob {value:?} in {text:?}: {}", e.kind()))?;
                value.to_owned()
            }
        };
        terms.push((field, value));
    }
    Ok(ContainerSelector::All(terms))
}

/// A container id or a prefix of it (12 to 64 hex digits), in lowercase.
fn container_id_prefix(text: &str) -> Option<String> {
    (text.bytes().all(|b| b.is_ascii_hexdigit()) && (12..=64).contains(&text.len()))
        .then(|| text.to_ascii_lowercase())
}

/// An `[agents] cgroups` glob: `*` stays within one path component, `**` crosses them.
pub fn cgroup_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}
