//! `guard daemon --floor`: guard-ebpf's empty programs on every hook of the table
//! that loads here (the BPF-LSM ones aside), attached as the daemon attaches its
//! own: what the choice of hooks costs before guard does any work, the floor the
//! benchmarks measure guard against.

use aya::{
    Ebpf,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr,
        RawTracePoint, TracePoint,
    },
};

use super::{
    Error, RING_KIB_DEFAULT, prepare, program_mut,
    table::{Hook, TABLE, floor_program, optional_tracepoint},
};

/// Loads the floor programs and attaches one per hook guard uses; returns the
/// object (dropping it detaches them) and the number of attachments.
pub fn load() -> Result<(Ebpf, usize), Error> {
    let super::Prepared {
        mut bpf,
        cgroup_path,
        cgroup,
        ..
    } = prepare(None, RING_KIB_DEFAULT * 1024, super::object::Choice::Auto)?;
    let mut loaded: Vec<&'static str> = Vec::new();
    let mut n = 0;
    let attach_err = |program: &'static str, target: String| {
        move |source| Error::Attach {
            program,
            target,
            source,
        }
    };
    for entry in TABLE {
        let Some(program) = floor_program(entry) else {
            continue;
        };
        // Only the hooks this build's guard attaches (table.rs `compat_only`).
        if entry.compat_only && bpf.program(entry.program).is_none() {
            continue;
        }
        let first = !loaded.contains(&program);
        if first {
            loaded.push(program);
        }
        let load_err = |source| Error::Program { program, source };
        match entry.hook {
            Hook::Raw(tp) => {
                let p: &mut RawTracePoint = program_mut(&mut bpf, program)?;
                if first {
                    p.load().map_err(load_err)?;
                }
                p.attach(tp).map_err(attach_err(program, tp.to_owned()))?;
                n += 1;
            }
            Hook::Syscalls(tracepoints) => {
                let p: &mut TracePoint = program_mut(&mut bpf, program)?;
                if first {
                    p.load().map_err(load_err)?;
                }
                for tp in tracepoints {
                    match p.attach("syscalls", tp) {
                        Ok(_) => n += 1,
                        Err(_) if optional_tracepoint(tp) => {}
                        Err(source) => {
                            return Err(Error::Attach {
                                program,
                                target: (*tp).to_owned(),
                                source,
                            });
                        }
                    }
                }
            }
            Hook::SockAddr => {
                let p: &mut CgroupSockAddr = program_mut(&mut bpf, program)?;
                p.load().map_err(load_err)?;
                p.attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(attach_err(program, cgroup_path.display().to_string()))?;
                n += 1;
            }
            Hook::SkbEgress | Hook::SkbIngress => {
                let way = if entry.hook == Hook::SkbEgress {
                    CgroupSkbAttachType::Egress
                } else {
                    CgroupSkbAttachType::Ingress
                };
                let p: &mut CgroupSkb = program_mut(&mut bpf, program)?;
                p.load().map_err(load_err)?;
                p.attach(&cgroup, way, CgroupAttachMode::Single)
                    .map_err(attach_err(program, cgroup_path.display().to_string()))?;
                n += 1;
            }
            Hook::SockRelease => {
                let p: &mut CgroupSock = program_mut(&mut bpf, program)?;
                p.load().map_err(load_err)?;
                p.attach(&cgroup, CgroupAttachMode::Single)
                    .map_err(attach_err(program, cgroup_path.display().to_string()))?;
                n += 1;
            }
            Hook::Lsm(_) => {}
        }
    }
    Ok((bpf, n))
}
