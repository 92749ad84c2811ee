//! The redactor's tables of real command lines and shell strings, and its properties.

use super::*;

/// The built-in rules, compiled once for every test.
static BUILT_IN: std::sync::LazyLock<Redactor> =
    std::sync::LazyLock::new(|| Redactor::new(true, &[]));

fn redacted(argv: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
    BUILT_IN.argv(&mut v);
    v
}

/// Real-world shapes: each row is a command line and what it must become.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "a table of real command lines and their redacted forms, one row per shape"
)]
fn credentials_in_command_lines_are_redacted() {
    let table: &[(&[&str], &[&str])] = &[
        (
            &[
                "curl",
                "-H",
                "Authorization: Bearer ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                "https://api.github.com",
            ],
            &[
                "curl",
                "-H",
                "Authorization: [REDACTED]",
                "https://api.github.com",
            ],
        ),
        (
            &[
                "curl",
                "-H",
                "x-api-key: sk-ant-api03-abcdefghijklmnopqrstuv",
                "https://api.anthropic.com",
            ],
            &[
                "curl",
                "-H",
                "x-api-key: [REDACTED]",
                "https://api.anthropic.com",
            ],
        ),
        (
            &[
                "sh",
                "-c",
                "curl -s -H \"Authorization: Bearer abc.def.ghijklmnop\" http://x",
            ],
            &[
                "sh",
                "-c",
                "curl -s -H \"Authorization: [REDACTED]\" http://x",
            ],
        ),
        (
            &["psql", "--password=hunter2", "-h", "db"],
            &["psql", "--password=[REDACTED]", "-h", "db"],
        ),
        (
            &["vault", "login", "--token", "s.abcdef123456"],
            &["vault", "login", "--token", "[REDACTED]"],
        ),
        (
            &["mysql", "-uroot", "-phunter2", "app"],
            &["mysql", "-uroot", "-p[REDACTED]", "app"],
        ),
        (&["mkdir", "-p", "build"], &["mkdir", "-p", "build"]),
        (
            &[
                "git",
                "clone",
                "https://alice:ghp_0123456789abcdefghijklmnopqrstuvwxyz@github.com/acme/app",
            ],
            &[
                "git",
                "clone",
                "https://alice:[REDACTED]@github.com/acme/app",
            ],
        ),
        (
            &[
                "env",
                "GITHUB_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                "make",
            ],
            &["env", "GITHUB_TOKEN=[REDACTED]", "make"],
        ),
        (
            &[
                "env",
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws",
                "s3",
                "ls",
            ],
            &["env", "AWS_SECRET_ACCESS_KEY=[REDACTED]", "aws", "s3", "ls"],
        ),
        (
            &[
                "aws",
                "configure",
                "set",
                "aws_access_key_id",
                "AKIAIOSFODNN7EXAMPLE",
            ],
            &["aws", "configure", "set", "aws_access_key_id", "[REDACTED]"],
        ),
        (
            &[
                "python3",
                "-c",
                "openai.api_key='sk-proj-abcdefghijklmnopqrstuvwxyz012345'",
            ],
            &["python3", "-c", "openai.api_key='[REDACTED]'"],
        ),
        (
            &["echo", "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234"],
            &["echo", "[REDACTED]"],
        ),
        (
            &["slack", "xoxb-123456789012-abcdefghij"],
            &["slack", "[REDACTED]"],
        ),
        (
            &[
                "jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop",
            ],
            &["jwt", "[REDACTED]"],
        ),
        (
            &["cargo", "test", "--release"],
            &["cargo", "test", "--release"],
        ),
        (&["ls", "-la", "/home/alice"], &["ls", "-la", "/home/alice"]),
    ];
    for (argv, want) in table {
        let got = redacted(argv);
        let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(got, want, "{argv:?}");
    }
}

#[test]
fn policy_patterns_redact_their_secret_group_and_off_changes_nothing() {
    let r = Redactor::new(true, &[r"ticket-(?P<secret>[0-9]{6})".to_owned()]);
    assert_eq!(
        r.text("see ticket-123456 now").as_deref(),
        Some("see ticket-[REDACTED] now")
    );
    let off = Redactor::new(false, &[]);
    let mut argv = vec![
        "curl".to_owned(),
        "-H".to_owned(),
        "Authorization: Bearer abcdefghij".to_owned(),
    ];
    assert!(!off.argv(&mut argv));
    assert_eq!(argv[2], "Authorization: Bearer abcdefghij");
}

/// A shell string as agents run it (`sh -c SCRIPT`), redacted.
fn sh(script: &str) -> String {
    let mut argv = vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
    BUILT_IN.argv(&mut argv);
    argv.swap_remove(2)
}

/// Real shell strings: each secret is cut, and only the secret: the rest of the
/// string (quotes, operators, other commands) is byte for byte what it was.
#[test]
fn secrets_inside_shell_strings_are_cut_and_nothing_else() {
    let table: &[(&str, &str)] = &[
        (
            "mysql -pS3cret -e 'select 1'",
            "mysql -p[REDACTED] -e 'select 1'",
        ),
        (
            "cd /app && mysql -uroot -p'S3 cret' app < dump.sql; echo done",
            "cd /app && mysql -uroot -p'[REDACTED]' app < dump.sql; echo done",
        ),
        (
            "mysql -u root \"-pS3cret\" db",
            "mysql -u root \"-p[REDACTED]\" db",
        ),
        // An escaped character inside the password: cut with it.
        ("mysql -pS3\\$cret db", "mysql -p[REDACTED] db"),
        (
            "mysqldump -pS3cret app > app.sql",
            "mysqldump -p[REDACTED] app > app.sql",
        ),
        // Several secrets in one line, of every documented shape.
        (
            "mysql -pA1b2c3 -e 'x'; curl -u alice:hunter2 https://x; psql --password hunter3 -h db; vault login --token=s.abc123",
            "mysql -p[REDACTED] -e 'x'; curl -u alice:[REDACTED] https://x; psql --password [REDACTED] -h db; vault login --token=[REDACTED]",
        ),
        (
            "curl --user 'alice:p@ss word' https://x && curl -ubob:pw123 https://y",
            "curl --user 'alice:[REDACTED]' https://x && curl -ubob:[REDACTED] https://y",
        ),
        // The header's value ends with its word: what follows stays.
        (
            "curl -s -H \"Authorization: Bearer abc.def.ghijklmnop\" -d '{\"q\":1}' http://x && echo done",
            "curl -s -H \"Authorization: [REDACTED]\" -d '{\"q\":1}' http://x && echo done",
        ),
        (
            "curl -H 'x-api-key: k-123456' -H \"Content-Type: application/json\" https://api",
            "curl -H 'x-api-key: [REDACTED]' -H \"Content-Type: application/json\" https://api",
        ),
        // Assignments before a command.
        (
            "PGPASSWORD=hunter2 psql -h db -c 'select 1'",
            "PGPASSWORD=[REDACTED] psql -h db -c 'select 1'",
        ),
        (
            "MYSQL_PWD='pass word' mysqldump app > app.sql",
            "MYSQL_PWD='[REDACTED]' mysqldump app > app.sql",
        ),
        (
            "export GITHUB_TOKEN=\"abc def\"; gh pr list",
            "export GITHUB_TOKEN=\"[REDACTED]\"; gh pr list",
        ),
        // Here-documents: their lines as text, and as a script.
        (
            "cat > .env <<'EOF'\nOPENAI_API_KEY=abc123xyz\nDEBUG=1\nEOF\necho ok",
            "cat > .env <<'EOF'\nOPENAI_API_KEY=[REDACTED]\nDEBUG=1\nEOF\necho ok",
        ),
        (
            "mysql -uroot -phunter2 <<EOF\nselect 1;\nEOF",
            "mysql -uroot -p[REDACTED] <<EOF\nselect 1;\nEOF",
        ),
        (
            "curl -H @- https://x <<EOF\nAuthorization: Bearer abcdefgh123\nEOF\n",
            "curl -H @- https://x <<EOF\nAuthorization: [REDACTED]\nEOF\n",
        ),
        (
            "bash <<'SH'\nmysql -pS3cret app\nSH",
            "bash <<'SH'\nmysql -p[REDACTED] app\nSH",
        ),
        // Scripts inside scripts: bash -lc in sh -c, eval (Claude Code's wrapper),
        // ssh's remote command, su -c, a command substitution.
        (
            "bash -lc \"mysql -pS3cret -e \\\"select 1\\\"\"",
            "bash -lc \"mysql -p[REDACTED] -e \\\"select 1\\\"\"",
        ),
        (
            "source /root/.claude/shell-snapshots/snapshot-bash-1.sh && eval 'mysql -pS3cret app' \\< /dev/null && pwd -P >| /tmp/claude-1-cwd",
            "source /root/.claude/shell-snapshots/snapshot-bash-1.sh && eval 'mysql -p[REDACTED] app' \\< /dev/null && pwd -P >| /tmp/claude-1-cwd",
        ),
        (
            "shopt -u promptvars nullglob extglob nocaseglob dotglob; ( trap 'echo $? > /tmp/s' EXIT; mysql -pS3cret app ) 2>&1",
            "shopt -u promptvars nullglob extglob nocaseglob dotglob; ( trap 'echo $? > /tmp/s' EXIT; mysql -p[REDACTED] app ) 2>&1",
        ),
        (
            "ssh -p 2222 db1 \"mysql -pS3cret -e 'select 1'\"",
            "ssh -p 2222 db1 \"mysql -p[REDACTED] -e 'select 1'\"",
        ),
        (
            "su postgres -c 'PGPASSWORD=hunter2 psql'",
            "su postgres -c 'PGPASSWORD=[REDACTED] psql'",
        ),
        (
            "echo $(mysql -N -pS3cret -e 'select 1') > out",
            "echo $(mysql -N -p[REDACTED] -e 'select 1') > out",
        ),
        (
            "sshpass -p 'hunter2' ssh user@host uptime",
            "sshpass -p '[REDACTED]' ssh user@host uptime",
        ),
        (
            "git clone https://alice:ghp_0123456789abcdefghijklmnopqrstuvwxyz@github.com/acme/app && cd app",
            "git clone https://alice:[REDACTED]@github.com/acme/app && cd app",
        ),
        // A key in a comment, or anywhere: its shape.
        (
            "ls # ghp_0123456789abcdefghijklmnopqrstuvwxyz\nmake",
            "ls # [REDACTED]\nmake",
        ),
        // Cut short (a truncated argv): what is there is still read.
        ("mysql -pS3cret -e 'select", "mysql -p[REDACTED] -e 'select"),
    ];
    for (script, want) in table {
        assert_eq!(sh(script), *want, "{script}");
    }
    // Nothing that only looks like it.
    for benign in [
        "mkdir -p build && cd build && cmake ..",
        "ls -p /tmp; cargo test -p guard --release",
        "git commit -m 'fix the password field' && git push",
        "cd /src && echo \"$PWD\" && OLDPWD=/tmp ls",
        "curl -u alice https://x",
        "psql -h db -U app",
        "cat <<EOF\nhello\nEOF",
    ] {
        assert_eq!(sh(benign), benign);
    }
}

/// The agents' own wrappers run the command through a shell somewhere in their argv.
#[test]
fn shells_inside_the_agents_wrappers_are_read() {
    let table: &[(&[&str], &str)] = &[
        // Codex's process setup, then bash (docs/codex.md).
        (
            &[
                "/proc/self/exe",
                "--codex-run-as-process-setup",
                "3",
                "1234",
                "pipe",
                "",
                "/w",
                "/bin/bash",
                "/bin/bash",
                "-c",
                "mysql -pS3cret app",
            ],
            "mysql -p[REDACTED] app",
        ),
        // Copilot CLI's.
        (
            &[
                "/bin/bash",
                "--norc",
                "--noprofile",
                "-c",
                "mysql -pS3cret app",
            ],
            "mysql -p[REDACTED] app",
        ),
        // Claude Code's login shell: -c before -l.
        (
            &["/bin/bash", "-c", "-l", "mysql -pS3cret app"],
            "mysql -p[REDACTED] app",
        ),
        (
            &["bash", "-euo", "pipefail", "-c", "mysql -pS3cret app"],
            "mysql -p[REDACTED] app",
        ),
        (
            &["sudo", "-u", "app", "sh", "-c", "mysql -pS3cret app"],
            "mysql -p[REDACTED] app",
        ),
        (
            &["docker", "exec", "db", "mysql", "-uroot", "-pS3cret"],
            "-p[REDACTED]",
        ),
    ];
    for (argv, want) in table {
        let got = redacted(argv);
        assert_eq!(got.last().map(String::as_str), Some(*want), "{argv:?}");
        assert_eq!(got.len(), argv.len());
    }
    // A shell's script file is not a script string.
    assert_eq!(
        redacted(&["bash", "run.sh", "-pS3cret"]),
        ["bash", "run.sh", "-pS3cret"]
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A command of words that are no secret and look like none.
    fn benign() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            prop::sample::select(vec![
                "ls",
                "-la",
                "cd",
                "/tmp/x",
                "make",
                "cargo",
                "build",
                "--release",
                "git",
                "status",
                "echo",
                "'a b'",
                "\"c d\"",
                "-p",
                "-e",
                "x=1",
                "src/*.rs",
                "2>&1",
                "> out",
                "$HOME",
                "\\ ",
                "{",
                "}",
                "true",
            ])
            .prop_map(str::to_owned),
            "[a-z0-9./]{1,6}",
        ];
        prop::collection::vec(word, 1..5).prop_map(|w| w.join(" "))
    }

    /// A secret: letters and digits, long enough to be one.
    fn secret() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{8,16}"
    }

    /// A command with one secret in a documented shape: its text, and the range of
    /// the text that is the secret.
    fn with_secret() -> impl Strategy<Value = (String, Range<usize>)> {
        (0..12usize, secret(), "[a-z]{3,8}").prop_map(|(shape, s, user)| {
            let (before, after) = match shape {
                0 => ("mysql -uroot -p".to_owned(), " app".to_owned()),
                1 => ("mysql -p'".to_owned(), "' -e 'select 1'".to_owned()),
                2 => (format!("curl -u {user}:"), " https://x".to_owned()),
                3 => ("psql --password ".to_owned(), " -h db".to_owned()),
                4 => ("vault login --token=".to_owned(), String::new()),
                5 => ("PGPASSWORD=".to_owned(), " psql -h db".to_owned()),
                6 => (
                    "curl -H \"Authorization: ".to_owned(),
                    "\" https://x".to_owned(),
                ),
                7 => ("export API_TOKEN=\"".to_owned(), "\"".to_owned()),
                8 => ("sshpass -p ".to_owned(), format!(" ssh {user}@host")),
                9 => ("bash -c 'mysql -p".to_owned(), " -e x'".to_owned()),
                // The delimiter alone on its line, as a shell needs it.
                10 => (
                    "cat > .env <<EOF\nAPP_SECRET=".to_owned(),
                    "\nEOF\n".to_owned(),
                ),
                _ => (
                    format!("git clone https://{user}:"),
                    "@git.example.com/app".to_owned(),
                ),
            };
            let start = before.len();
            (format!("{before}{s}{after}"), start..start + s.len())
        })
    }

    /// A script of benign commands and commands with secrets, and its secrets.
    fn script() -> impl Strategy<Value = (String, Vec<Range<usize>>)> {
        let part = prop_oneof![
            benign().prop_map(|b| (b, None)),
            with_secret().prop_map(|(t, r)| (t, Some(r))),
        ];
        let separator = prop::sample::select(vec!["; ", " && ", " || ", " | ", "\n", " & "]);
        prop::collection::vec((part, separator), 1..6).prop_map(|parts| {
            let mut text = String::new();
            let mut secrets = Vec::new();
            for ((part, secret), separator) in parts {
                if let Some(r) = secret {
                    secrets.push(r.start + text.len()..r.end + text.len());
                }
                text.push_str(&part);
                text.push_str(separator);
            }
            (text, secrets)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Every secret is cut, and nothing outside the secrets is: the redacted
        /// script is the script with exactly its secrets replaced.
        #[test]
        fn only_the_secrets_are_cut((text, secrets) in script()) {
            let want = splice(&text, secrets).unwrap_or_else(|| text.clone());
            prop_assert_eq!(sh(&text), want);
        }

        /// Whatever the text (any characters, unbalanced quotes, operators): every
        /// cut lies in it, on character boundaries, and the redacted text is the
        /// text with those cuts replaced, nothing else.
        #[test]
        fn redaction_only_replaces_ranges_of_the_text(
            text in prop_oneof![any::<String>(), "[-a-zA-Z0-9 '\"\\\\$`();|&<>#=:@\n]{0,80}"]
        ) {
            let mut cuts = Vec::new();
            BUILT_IN.script(&text, 1, &mut cuts);
            for c in &cuts {
                prop_assert!(c.start < c.end && c.end <= text.len(), "{c:?} in {text:?}");
                prop_assert!(text.is_char_boundary(c.start) && text.is_char_boundary(c.end));
            }
            let want = splice(&text, cuts).unwrap_or_else(|| text.clone());
            prop_assert_eq!(sh(&text), want);
            // Outside the cuts, the text is as it was: it reads back from the pieces
            // between the [REDACTED]s.
            let got = sh(&text);
            let mut rest = text.as_str();
            for piece in got.split(REDACTED) {
                let at = rest.find(piece);
                prop_assert!(at.is_some(), "{piece:?} is not in {text:?}");
                rest = &rest[at.unwrap_or(0) + piece.len()..];
            }
        }
    }
}
