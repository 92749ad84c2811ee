//! The words of a shell script, each with where its bytes came from, so that a cut in
//! a word (a password after `-p`, a header's value) maps back to a range of the
//! script and the rest of the script stays byte for byte as it was.
//!
//! Not a shell: enough of POSIX sh and bash's syntax to find the commands agents run
//! (`bash -lc "<cmd>"`, `sh -c`, the agents' own wrappers) and their words: quotes
//! (`'…'`, `"…"`, `$'…'`), backslashes, the operators that end a command (`;`, `&`,
//! `|`, `&&`, `||`, `(`, `)`, a newline), redirections, comments, here-documents
//! (whose bodies are returned to be read as scripts and as text), and command and
//! process substitutions (returned as nested scripts). Whatever it does not
//! understand stays inside a word: nothing is lost, and a script cut short (a
//! truncated argv: an unclosed quote) still gives every word up to its end.
//!
//! Why not the `shlex` crate: it gives each word's value but not where it came from,
//! ignores the operators (`mysql -pX;ls` is one word to it), and drops the last word
//! of a script that ends inside a quote.

use std::ops::Range;

/// One word: its value once quotes and escapes are taken out, and for each byte of
/// the value the offset in the script of the byte it came from.
#[derive(Debug, Default)]
pub(super) struct Word {
    value: Vec<u8>,
    from: Vec<usize>,
}

impl Word {
    fn push(&mut self, byte: u8, at: usize) {
        self.value.push(byte);
        self.from.push(at);
    }

    /// The word's value (text without its quotes and escapes).
    pub(super) fn value(&self) -> &str {
        // Only ASCII bytes (quotes, backslashes) are ever left out of a value, whole
        // characters are copied: it is UTF-8 when the script is.
        std::str::from_utf8(&self.value).unwrap_or_default()
    }

    /// The range of the script that `range` of the value came from: from its first
    /// byte's source to its last byte's (quotes between them included).
    pub(super) fn source(&self, range: Range<usize>) -> Option<Range<usize>> {
        if range.is_empty() {
            return None;
        }
        let start = *self.from.get(range.start)?;
        let end = *self.from.get(range.end - 1)? + 1;
        Some(start..end)
    }
}

/// A simple command: its words (the command's argv, assignments before it
/// included) and the words that are not arguments (redirection targets,
/// here-strings).
#[derive(Debug, Default)]
pub(super) struct Command {
    pub words: Vec<Word>,
    pub others: Vec<Word>,
}

/// What a script is made of.
#[derive(Debug, Default)]
pub(super) struct Script {
    pub commands: Vec<Command>,
    /// The bodies of here-documents (ranges of the script).
    pub bodies: Vec<Range<usize>>,
    /// Command and process substitutions (`$(…)`, `` `…` ``, `<(…)`): the script
    /// inside each (ranges of the script). Their text is also in the word they are in.
    pub nested: Vec<Range<usize>>,
}

/// Where the next word goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Argument,
    /// The target of a redirection, or a here-string.
    Other,
    /// A here-document's delimiter; `true`: `<<-` (leading tabs stripped).
    Delimiter(bool),
}

struct Lexer<'s> {
    src: &'s [u8],
    at: usize,
    script: Script,
    command: Command,
    word: Option<Word>,
    next: Next,
    /// Here-documents whose body starts after the current line.
    pending: Vec<(Vec<u8>, bool)>,
}

/// The commands, here-document bodies and substitutions of `src`.
pub(super) fn parse(src: &str) -> Script {
    let mut lexer = Lexer {
        src: src.as_bytes(),
        at: 0,
        script: Script::default(),
        command: Command::default(),
        word: None,
        next: Next::Argument,
        pending: Vec::new(),
    };
    lexer.run();
    lexer.script
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.at + ahead).copied()
    }

    fn word(&mut self) -> &mut Word {
        self.word.get_or_insert_with(Word::default)
    }

    /// Adds `byte`, which came from `at`, to the word being read.
    fn push(&mut self, byte: u8, at: usize) {
        self.word().push(byte, at);
    }

    fn end_word(&mut self) {
        let Some(word) = self.word.take() else {
            return;
        };
        match std::mem::replace(&mut self.next, Next::Argument) {
            Next::Argument => self.command.words.push(word),
            Next::Other => self.command.others.push(word),
            Next::Delimiter(strip) => self.pending.push((word.value, strip)),
        }
    }

    fn end_command(&mut self) {
        self.end_word();
        let command = std::mem::take(&mut self.command);
        if !command.words.is_empty() || !command.others.is_empty() {
            self.script.commands.push(command);
        }
    }

    fn run(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                b' ' | b'\t' | b'\r' => {
                    self.end_word();
                    self.at += 1;
                }
                b'\n' => {
                    self.end_command();
                    self.at += 1;
                    self.bodies();
                }
                b'&' if self.peek(1) == Some(b'>') => {
                    // `&>file`, `&>>file`: both outputs to a file.
                    self.end_word();
                    self.at += 1;
                    self.redirection();
                }
                b';' | b'&' | b'|' | b'(' | b')' => {
                    self.end_command();
                    self.at += 1;
                }
                b'<' | b'>' if self.peek(1) == Some(b'(') => {
                    // Process substitution: a script of its own.
                    self.end_word();
                    let start = self.at;
                    let end = self.closing_paren(self.at + 2);
                    self.script.nested.push(self.at + 2..end);
                    for at in start..(end + 1).min(self.src.len()) {
                        self.push(self.src[at], at);
                    }
                    self.at = end + 1;
                }
                b'<' | b'>' => {
                    // A file descriptor's number before it (`2>`) is not a word.
                    if self
                        .word
                        .as_ref()
                        .is_some_and(|w| w.value.iter().all(u8::is_ascii_digit))
                    {
                        self.word = None;
                    }
                    self.end_word();
                    self.redirection();
                }
                b'#' if self.word.is_none() => {
                    while self.peek(0).is_some_and(|c| c != b'\n') {
                        self.at += 1;
                    }
                }
                _ => self.word_part(),
            }
        }
        self.end_command();
    }

    /// At `<` or `>`: the operator; what the next word is.
    fn redirection(&mut self) {
        let op_start = self.at;
        while self
            .peek(0)
            .is_some_and(|c| matches!(c, b'<' | b'>' | b'&' | b'|' | b'-'))
        {
            self.at += 1;
            // `2>&1`, `>&-`: a descriptor, not a file name.
            if self.src[self.at - 1] == b'&'
                && self
                    .peek(0)
                    .is_some_and(|c| c.is_ascii_digit() || c == b'-')
            {
                while self
                    .peek(0)
                    .is_some_and(|c| c.is_ascii_digit() || c == b'-')
                {
                    self.at += 1;
                }
                return;
            }
        }
        let op = &self.src[op_start..self.at];
        self.next = match op {
            b"<<" => Next::Delimiter(false),
            b"<<-" => Next::Delimiter(true),
            _ => Next::Other,
        };
    }

    /// One piece of a word: a quoted string, an escape, a substitution or a byte.
    fn word_part(&mut self) {
        let at = self.at;
        let c = self.src[at];
        match c {
            b'\\' => match self.peek(1) {
                // A line continuation: nothing.
                Some(b'\n') => self.at += 2,
                Some(next) => {
                    self.push(next, at + 1);
                    self.at += 2;
                }
                None => {
                    self.push(c, at);
                    self.at += 1;
                }
            },
            b'\'' => {
                self.word();
                self.at += 1;
                while let Some(c) = self.peek(0) {
                    self.at += 1;
                    if c == b'\'' {
                        break;
                    }
                    self.push(c, self.at - 1);
                }
            }
            b'"' => {
                self.word();
                self.at += 1;
                self.double_quoted();
            }
            b'$' if self.peek(1) == Some(b'\'') => {
                // ANSI-C quoting: `\'` and `\\` are the quote and the backslash; other
                // escapes stay as they are (their values do not matter here).
                self.word();
                self.at += 2;
                while let Some(c) = self.peek(0) {
                    if c == b'\'' {
                        self.at += 1;
                        break;
                    }
                    if c == b'\\' && matches!(self.peek(1), Some(b'\'' | b'\\')) {
                        self.push(self.src[self.at + 1], self.at + 1);
                        self.at += 2;
                        continue;
                    }
                    self.push(c, self.at);
                    self.at += 1;
                }
            }
            b'$' | b'`' => self.substitution(),
            _ => {
                self.push(c, at);
                self.at += 1;
            }
        }
    }

    /// After an opening `"`: up to the closing one.
    fn double_quoted(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                b'"' => {
                    self.at += 1;
                    return;
                }
                b'\\' => match self.peek(1) {
                    Some(b'\n') => self.at += 2,
                    Some(next @ (b'$' | b'`' | b'"' | b'\\')) => {
                        self.push(next, self.at + 1);
                        self.at += 2;
                    }
                    _ => {
                        self.push(c, self.at);
                        self.at += 1;
                    }
                },
                b'$' | b'`' => self.substitution(),
                _ => {
                    self.push(c, self.at);
                    self.at += 1;
                }
            }
        }
    }

    /// At `$` or a backquote: `$(…)`, `$((…))`, `${…}` and `` `…` `` are copied into
    /// the word as they are; the commands inside `$(…)` and `` `…` `` are a nested
    /// script. A lone `$` is itself.
    fn substitution(&mut self) {
        let start = self.at;
        let end = match (self.src[start], self.peek(1)) {
            (b'$', Some(b'(')) => {
                let end = self.closing_paren(start + 2);
                self.script.nested.push(start + 2..end);
                end + 1
            }
            (b'$', Some(b'{')) => {
                let mut at = start + 2;
                while at < self.src.len() && self.src[at] != b'}' {
                    at += 1;
                }
                at + 1
            }
            (b'`', _) => {
                let mut at = start + 1;
                while at < self.src.len() && self.src[at] != b'`' {
                    at += if self.src[at] == b'\\' { 2 } else { 1 };
                }
                let end = at.min(self.src.len());
                self.script.nested.push(start + 1..end);
                end + 1
            }
            _ => start + 1,
        };
        let end = end.min(self.src.len());
        for at in start..end {
            self.push(self.src[at], at);
        }
        self.at = end;
    }

    /// The offset of the `)` that closes a parenthesis opened just before `from`
    /// (quotes and nested parentheses skipped), or the script's end.
    fn closing_paren(&self, from: usize) -> usize {
        let mut depth = 1usize;
        let mut at = from;
        while at < self.src.len() {
            match self.src[at] {
                b'\\' => at += 1,
                b'\'' => {
                    at += 1;
                    while at < self.src.len() && self.src[at] != b'\'' {
                        at += 1;
                    }
                }
                b'"' => {
                    at += 1;
                    while at < self.src.len() && self.src[at] != b'"' {
                        if self.src[at] == b'\\' {
                            at += 1;
                        }
                        at += 1;
                    }
                }
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return at;
                    }
                }
                _ => {}
            }
            at += 1;
        }
        self.src.len()
    }

    /// At the start of a line: the bodies of the here-documents its previous line
    /// opened, in order, each up to the line that is its delimiter.
    fn bodies(&mut self) {
        for (delimiter, strip) in std::mem::take(&mut self.pending) {
            let start = self.at;
            let mut end = self.src.len();
            while self.at < self.src.len() {
                let line_start = self.at;
                let line_end = self.src[line_start..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(self.src.len(), |n| line_start + n);
                let mut line = &self.src[line_start..line_end];
                if strip {
                    while let [b'\t', rest @ ..] = line {
                        line = rest;
                    }
                }
                self.at = (line_end + 1).min(self.src.len());
                if line == delimiter.as_slice() {
                    end = line_start;
                    break;
                }
            }
            self.script.bodies.push(start..end.max(start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<Vec<String>> {
        parse(src)
            .commands
            .iter()
            .map(|c| c.words.iter().map(|w| w.value().to_owned()).collect())
            .collect()
    }

    #[test]
    fn commands_and_their_words() {
        assert_eq!(
            words("a 'b c' \"d\\\"e\" f\\ g; h&&i|j || k\nl (m) $'n\\'o'"),
            [
                vec!["a", "b c", "d\"e", "f g"],
                vec!["h"],
                vec!["i"],
                vec!["j"],
                vec!["k"],
                vec!["l"],
                vec!["m"],
                vec!["n'o"],
            ]
        );
        // Redirections are not arguments; descriptors are not words.
        let s = parse("mysql -uroot 2>/dev/null <<<'select 1' >&2 -pX");
        assert_eq!(
            s.commands[0]
                .words
                .iter()
                .map(Word::value)
                .collect::<Vec<_>>(),
            ["mysql", "-uroot", "-pX"]
        );
        assert_eq!(
            s.commands[0]
                .others
                .iter()
                .map(Word::value)
                .collect::<Vec<_>>(),
            ["/dev/null", "select 1"]
        );
        // Comments are not words.
        assert_eq!(words("a # b c\nd"), [vec!["a"], vec!["d"]]);
        assert_eq!(words("a#b"), [vec!["a#b"]]);
    }

    #[test]
    fn each_byte_of_a_value_knows_its_source() {
        let src = "x -p'a b'\"c\"d";
        let s = parse(src);
        let w = &s.commands[0].words[1];
        assert_eq!(w.value(), "-pa bcd");
        // "a bcd" (value 2..7) came from `a b'"c"d`.
        assert_eq!(w.source(2..7).map(|r| &src[r]), Some("a b'\"c\"d"));
        assert_eq!(w.source(2..3).map(|r| &src[r]), Some("a"));
    }

    #[test]
    fn here_documents_and_substitutions() {
        let src = "cat <<EOF >x; cat <<-'E2'\nA=1\nEOF\n\tB=2\n\tE2\necho $(mysql -pX) `id` <(ls)";
        let s = parse(src);
        let bodies: Vec<&str> = s.bodies.iter().map(|r| &src[r.clone()]).collect();
        assert_eq!(bodies, ["A=1\n", "\tB=2\n"]);
        let nested: Vec<&str> = s.nested.iter().map(|r| &src[r.clone()]).collect();
        assert_eq!(nested, ["mysql -pX", "id", "ls"]);
        assert_eq!(words(src).last().map(Vec::len), Some(4));
    }

    #[test]
    fn a_script_cut_short_keeps_its_last_word() {
        assert_eq!(words("echo 'abc"), [vec!["echo", "abc"]]);
        assert_eq!(words("echo \"ab\\"), [vec!["echo", "ab\\"]]);
        assert_eq!(words("x $(a 'b"), [vec!["x", "$(a 'b"]]);
        assert_eq!(words("cat <<EOF\nbody"), [vec!["cat"]]);
    }
}
