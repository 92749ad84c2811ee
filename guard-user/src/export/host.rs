//! Facts about this host for the export's resource: its name and machine id, the
//! boot, the kernel, and (in Kubernetes) the node it is.

use super::record::Host;

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The host as the export describes it, under `policy` (its name, mode and tiers)
/// with `extra` resource attributes from the configuration.
pub fn facts(
    policy: &str,
    mode: &str,
    tiers: Vec<(String, String)>,
    extra: &[(String, String)],
) -> Host {
    let (uname, kernel) = crate::host::uname();
    // `host.name` in `[export] resource` names the host instead of the kernel's
    // hostname (a pod's, or a name people know it by).
    let mut extra = extra.to_vec();
    let name = match extra.iter().position(|(k, _)| k == "host.name") {
        Some(i) => extra.remove(i).1,
        None => uname,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    // A DaemonSet passes the node's name through the downward API.
    if let Ok(node) = std::env::var("K8S_NODE_NAME")
        && !extra.iter().any(|(k, _)| k == "k8s.node.name")
    {
        extra.push(("k8s.node.name".to_owned(), node));
    }
    Host {
        name,
        id: read_trimmed("/etc/machine-id")
            .or_else(|| read_trimmed("/var/lib/dbus/machine-id"))
            .unwrap_or_default(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
        arch: arch.to_owned(),
        kernel,
        policy: policy.to_owned(),
        mode: mode.to_owned(),
        tiers,
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::facts;

    #[test]
    fn host_name_in_the_resource_names_the_host_once() {
        let extra = [
            ("host.name".to_owned(), "build-07".to_owned()),
            ("k8s.cluster.name".to_owned(), "eu".to_owned()),
        ];
        let host = facts("ci", "enforce", Vec::new(), &extra);
        assert_eq!(host.name, "build-07");
        let names: Vec<&str> = host.extra.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            names.contains(&"k8s.cluster.name") && !names.contains(&"host.name"),
            "{names:?}"
        );
        let unnamed = facts("ci", "enforce", Vec::new(), &[]);
        assert_eq!(unnamed.name, crate::host::uname().0);
    }
}
