//! The view of sessions for `guard sessions` and `guard top`.

use guard_common::protocol::{ProcessInfo, SessionInfo, SessionState};

use super::Registry;
use crate::event::rfc3339;

pub fn sessions(r: &Registry) -> Vec<SessionInfo> {
    r.sessions()
        .map(|s| {
            let mut processes: Vec<ProcessInfo> = r
                .procs()
                .filter(|(_, p)| p.session == s.id)
                .map(|(pid, p)| ProcessInfo {
                    pid: *pid,
                    ppid: p.ppid,
                    comm: p.comm.clone(),
                    exe: p.exe.clone(),
                    argv: p.argv.clone(),
                    role: guard_common::role::name(p.role).to_owned(),
                    agent_thread: p.agent_thread.as_deref().map(str::to_owned),
                    package: p.package.as_deref().map(str::to_owned),
                    tool_call: p.call.as_deref().map(str::to_owned),
                    undeclared: s.calls.undeclared(*pid, p.call.as_deref(), p.role),
                    sandboxed: p.sandboxed,
                })
                .collect();
            processes.sort_by_key(|p| p.pid);
            let meta = |f: fn(&crate::container::runtime::ContainerMeta) -> &Option<String>| {
                s.meta.as_deref().and_then(|m| f(m).clone())
            };
            SessionInfo {
                id: s.id.to_string(),
                agent: s.agent.clone(),
                root_pid: s.root_pid,
                how: s.how,
                uid: s.uid,
                user: s.user.as_deref().map(str::to_owned),
                cwd: s.cwd.clone(),
                container: s.container.as_deref().map(str::to_owned),
                pod: s.pod.as_deref().map(str::to_owned),
                container_name: meta(|m| &m.name),
                pod_name: meta(|m| &m.pod),
                namespace: meta(|m| &m.namespace),
                started: rfc3339(s.started_ns),
                ended: s.ended_ns.map(rfc3339),
                state: if s.ended_ns.is_some() {
                    SessionState::Ended
                } else {
                    SessionState::Running
                },
                counts: s.counts.clone(),
                agent_pid: s.agent_pid,
                agent_threads: s.agent_threads.iter().map(|t| t.to_string()).collect(),
                landlock: s.landlock.clone(),
                mount_ns: s.mount_ns.clone(),
                repository: s.repository.clone(),
                processes,
            }
        })
        .collect()
}
