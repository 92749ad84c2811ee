//! How an exec reached the program it runs, when the exec'd file is not that
//! program: the dynamic loader run by hand (`ld-linux-x86-64.so.2 ./prog`: the
//! target is its first operand), a script interpreter (`sh ./script`,
//! `python3 script.py`), or a multi-call binary's applet (`busybox nc`: the name in
//! `argv[0]`, or in the first argument when `argv[0]` names the binary). Read from
//! the exec's own argv; rules on programs match the target too (see
//! `crate::matcher`), and events name it (`via`, `target`).

/// Multi-call binaries: one program that runs the applet its `argv[0]` (or, when
/// that names the binary, its first argument) names (`busybox nc`).
pub const MULTICALL_PROGRAMS: [&str; 2] = ["busybox", "toybox"];

/// Which runner the exec'd file is.
pub use guard_common::line::Via;

/// The program an exec runs through its runner: the runner, and the operand as
/// written (relative to the process's working directory when not absolute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub via: Via,
    pub target: String,
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The dynamic loader by its file name.
fn is_loader(name: &str) -> bool {
    name == "ld.so"
        || (name.starts_with("ld-") && name.contains(".so"))
        || (name.starts_with("ld64.so"))
}

/// Shells and script interpreters by file name.
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "perl", "ruby", "node", "nodejs",
    "php", "tclsh", "lua", "Rscript", "deno", "bun",
];

/// Shells and script interpreters by file name (`python3.12` as `python`).
fn is_interpreter(name: &str) -> bool {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    INTERPRETERS.contains(&name)
        || INTERPRETERS.contains(&base)
        || base == "python"
        || base == "pypy"
}

/// The file names of the programs that run another file as code (the shells and
/// interpreters [`target`] knows, Pythons by version, the dynamic loaders): the
/// kernel holds their execs in a session with downloads (`role::PROGRAM_INTERPRETER`).
pub fn runner_names() -> Vec<String> {
    let mut out: Vec<String> = INTERPRETERS.iter().map(|n| (*n).to_owned()).collect();
    for python in ["python", "pypy"] {
        out.push(python.to_owned());
        out.extend(["2", "2.7", "3"].iter().map(|v| format!("{python}{v}")));
        out.extend((6..=16).map(|minor| format!("{python}3.{minor}")));
    }
    out.extend(
        [
            "ld-linux-x86-64.so.2",
            "ld-linux-aarch64.so.1",
            "ld-linux.so.2",
            "ld-musl-x86_64.so.1",
            "ld-musl-aarch64.so.1",
            "ld.so",
        ]
        .map(str::to_owned),
    );
    out
}

/// Package managers by the name they are run as: what they (and what they start)
/// download is their registries', never a download of the session's
/// (`role::PROGRAM_INSTALLER`; a Python runs `pip`, `uv`, `pipx`, `poetry`, `pdm`
/// and `ensurepip` as modules too, `-m pip`).
pub const INSTALLERS: &[&str] = &[
    "npm",
    "npx",
    "pnpm",
    "yarn",
    "corepack",
    "pip",
    "pip3",
    "pipx",
    "uv",
    "uvx",
    "poetry",
    "pdm",
    "ensurepip",
    "conda",
    "mamba",
    "micromamba",
    "cargo",
    "rustup",
    "go",
    "gem",
    "bundle",
    "bundler",
    "composer",
    "apt",
    "apt-get",
    "dpkg",
    "mvn",
    "gradle",
    "nix",
    "brew",
];

/// Loader options that take a value (glibc's ld.so).
const LOADER_VALUE_OPTIONS: &[&str] = &[
    "--library-path",
    "--inhibit-rpath",
    "--audit",
    "--preload",
    "--argv0",
    "--glibc-hwcaps-prepend",
    "--glibc-hwcaps-mask",
];

/// Interpreter options that take a value; and those after which no script
/// follows (the program is inline: `-c`, `-e`, `-m`).
const INTERP_VALUE_OPTIONS: &[&str] = &["-W", "-X", "-o", "-O", "-I", "-r", "--require"];
const INTERP_INLINE: &[&str] = &["-c", "-e", "-m", "-E", "--eval", "-p", "--print"];

/// The applet a multi-call binary runs: the file name of `argv[0]`, or of the
/// first argument when `argv[0]` names the binary itself (as busybox reads them).
fn applet(argv: &[String]) -> Option<Target> {
    let is_binary = |a: &str| {
        MULTICALL_PROGRAMS
            .iter()
            .any(|m| file_name(a).starts_with(m))
    };
    let first = argv.first()?;
    let name = if is_binary(first) {
        file_name(argv.get(1).filter(|a| !a.starts_with('-'))?)
    } else {
        file_name(first)
    };
    (!name.is_empty()).then(|| Target {
        via: Via::Applet,
        target: name.to_owned(),
    })
}

/// The target of an exec of `exe` with `argv`, when `exe` is a runner.
pub fn target(exe: &str, argv: &[String]) -> Option<Target> {
    let name = file_name(exe);
    if MULTICALL_PROGRAMS.contains(&name) {
        return applet(argv);
    }
    let (via, value_options, inline): (Via, &[&str], &[&str]) = if is_loader(name) {
        (Via::Loader, LOADER_VALUE_OPTIONS, &[])
    } else if is_interpreter(name) {
        (Via::Interpreter, INTERP_VALUE_OPTIONS, INTERP_INLINE)
    } else {
        return None;
    };
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "--" {
            return args.next().map(|t| Target {
                via,
                target: t.clone(),
            });
        }
        if inline.contains(&a.as_str()) {
            return None;
        }
        if value_options.contains(&a.as_str()) {
            args.next();
            continue;
        }
        if a.starts_with('-') && a.len() > 1 {
            continue;
        }
        return Some(Target {
            via,
            target: a.clone(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_loader_names_its_target_past_its_options() {
        let t = target(
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            &argv(&[
                "/lib64/ld-linux-x86-64.so.2",
                "--library-path",
                "/opt/lib",
                "--inhibit-cache",
                "./prog",
                "-x",
            ]),
        );
        assert_eq!(
            t,
            Some(Target {
                via: Via::Loader,
                target: "./prog".into()
            })
        );
        assert_eq!(
            target("/lib/ld-musl-x86_64.so.1", &argv(&["ld", "/bin/nc"])).map(|t| t.target),
            Some("/bin/nc".into())
        );
    }

    #[test]
    fn interpreters_name_their_script_not_inline_code() {
        let t = target(
            "/usr/bin/python3.11",
            &argv(&["python3", "-X", "dev", "run.py", "a"]),
        );
        assert_eq!(
            t.map(|t| (t.via, t.target)),
            Some((Via::Interpreter, "run.py".into()))
        );
        assert_eq!(target("/usr/bin/bash", &argv(&["bash", "-c", "ls"])), None);
        assert_eq!(
            target("/usr/bin/python3", &argv(&["python3", "-m", "http.server"])),
            None
        );
        assert_eq!(
            target("/bin/sh", &argv(&["sh", "./x.sh"])).map(|t| t.target),
            Some("./x.sh".into())
        );
        assert_eq!(target("/bin/sh", &argv(&["sh"])), None);
        assert_eq!(target("/usr/bin/cat", &argv(&["cat", "x"])), None);
    }

    #[test]
    fn a_multi_call_binary_names_its_applet() {
        let applet = |a: &[&str]| target("/usr/bin/busybox", &argv(a)).map(|t| (t.via, t.target));
        let nc = Some((Via::Applet, "nc".to_owned()));
        assert_eq!(applet(&["busybox", "nc", "-l"]), nc);
        assert_eq!(applet(&["/bin/busybox", "/tmp/nc"]), nc);
        assert_eq!(applet(&["nc", "10.0.0.1", "80"]), nc);
        assert_eq!(applet(&["/usr/local/bin/nc"]), nc);
        assert_eq!(applet(&["busybox", "--list"]), None);
        assert_eq!(applet(&["busybox"]), None);
    }
}
