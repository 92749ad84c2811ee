//! docs/events.md against the code that writes the lines (`guard_common::line`): every
//! kind has its row and section; every field a kind's line can carry (and the fields
//! of the objects in it) is named in that kind's section, the fields of every event
//! in theirs, a violation's in "Violations"; every field a section's tables name is
//! one the code writes; and every value of `outcome`, `route` and `how`. The fields
//! are read from the types' source (serde's attributes: renames, flattened structs),
//! so a field added to a line without its documentation fails here, whoever adds it.

use std::collections::{BTreeMap, BTreeSet};

use guard_common::line::EventDetail;

const DOCS: &str = include_str!("../../../docs/events.md");

/// Where the line's types are declared.
const SOURCES: &[&str] = &[
    include_str!("../../../guard-common/src/line/mod.rs"),
    include_str!("../../../guard-common/src/protocol.rs"),
    include_str!("../../../guard-common/src/report.rs"),
];

/// A field as serde writes it.
struct Field {
    name: String,
    /// The type it holds, with `Option`, `Vec`, `Box` taken off.
    ty: String,
    flatten: bool,
}

/// The structs and enums of the sources, by name.
#[derive(Default)]
struct Types {
    structs: BTreeMap<String, Vec<Field>>,
    /// Variants: (serialised name, fields).
    enums: BTreeMap<String, Vec<(String, Vec<Field>)>>,
}

/// `#[serde(…)]`: (rename, flatten, skip, other, rename_all).
fn serde_attrs(attrs: &[syn::Attribute]) -> (Option<String>, bool, bool, bool, Option<String>) {
    let (mut rename, mut flatten, mut skip, mut other, mut rename_all) =
        (None, false, false, false, None);
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let value = if meta.input.peek(syn::Token![=]) {
                let lit: syn::Lit = meta.value()?.parse()?;
                match lit {
                    syn::Lit::Str(s) => Some(s.value()),
                    _ => None,
                }
            } else {
                None
            };
            match meta.path.get_ident().map(ToString::to_string).as_deref() {
                Some("rename") => rename = value,
                Some("rename_all") => rename_all = value,
                Some("flatten") => flatten = true,
                Some("skip") => skip = true,
                Some("other") => other = true,
                _ => {}
            }
            Ok(())
        })
        .expect("a serde attribute");
    }
    (rename, flatten, skip, other, rename_all)
}

/// `IoUring` → `io_uring`.
fn snake(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The type a field holds, without the containers around it.
fn inner(ty: &syn::Type) -> String {
    let syn::Type::Path(p) = ty else {
        return String::new();
    };
    let Some(last) = p.path.segments.last() else {
        return String::new();
    };
    let name = last.ident.to_string();
    if matches!(name.as_str(), "Option" | "Vec" | "Box" | "Arc")
        && let syn::PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(syn::GenericArgument::Type(t)) = args.args.first()
    {
        return inner(t);
    }
    name
}

fn fields(fields: &syn::Fields) -> Vec<Field> {
    fields
        .iter()
        .filter_map(|f| {
            let (rename, flatten, skip, _, _) = serde_attrs(&f.attrs);
            let ident = f.ident.as_ref()?.to_string();
            (!skip).then(|| Field {
                name: rename.unwrap_or(ident),
                ty: inner(&f.ty),
                flatten,
            })
        })
        .collect()
}

fn types() -> Types {
    let mut types = Types::default();
    for source in SOURCES {
        let file = syn::parse_file(source).expect("the sources parse");
        for item in file.items {
            match item {
                syn::Item::Struct(s) => {
                    types.structs.insert(s.ident.to_string(), fields(&s.fields));
                }
                syn::Item::Enum(e) => {
                    let (_, _, _, _, rename_all) = serde_attrs(&e.attrs);
                    let variants = e
                        .variants
                        .iter()
                        .filter_map(|v| {
                            let (rename, _, skip, other, _) = serde_attrs(&v.attrs);
                            let ident = v.ident.to_string();
                            let name = rename.unwrap_or_else(|| match rename_all.as_deref() {
                                Some("snake_case") => snake(&ident),
                                _ => ident,
                            });
                            (!skip && !other).then(|| (name, fields(&v.fields)))
                        })
                        .collect();
                    types.enums.insert(e.ident.to_string(), variants);
                }
                _ => {}
            }
        }
    }
    types
}

impl Types {
    /// The names a list of fields writes (flattened structs' included), each with
    /// the struct it holds, if one of the sources declares it.
    fn written(&self, list: &[Field]) -> BTreeMap<String, Option<String>> {
        let mut out = BTreeMap::new();
        for f in list {
            match (f.flatten, self.structs.get(&f.ty)) {
                (true, Some(inner)) => out.extend(self.written(inner)),
                // The kind's own fields (`EventDetail`), taken kind by kind.
                (true, None) => {}
                (false, inner) => {
                    out.insert(f.name.clone(), inner.map(|_| f.ty.clone()));
                }
            }
        }
        out
    }

    /// `written`, and the fields of the structs in it (one level).
    fn all_written(&self, list: &[Field]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (name, inner) in self.written(list) {
            out.insert(name);
            if let Some(s) = inner.and_then(|s| self.structs.get(&s)) {
                out.extend(self.written(s).into_keys());
            }
        }
        out
    }

    fn struct_fields(&self, name: &str) -> &[Field] {
        self.structs
            .get(name)
            .unwrap_or_else(|| panic!("no struct {name}"))
    }

    fn values(&self, name: &str) -> Vec<&str> {
        self.enums
            .get(name)
            .unwrap_or_else(|| panic!("no enum {name}"))
            .iter()
            .map(|(v, _)| v.as_str())
            .collect()
    }
}

/// The doc's text from the heading line `heading` picks to the next heading of its
/// level or above (its `####` subsections included).
fn section(docs: &str, heading: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in docs.lines() {
        if line.starts_with("## ") || line.starts_with("### ") {
            if inside {
                break;
            }
            inside = heading(line);
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "no such section in docs/events.md");
    out
}

fn kind_section(kind: &str) -> String {
    section(DOCS, |h| {
        h.starts_with("### ") && h.contains(&format!("`{kind}`"))
    })
}

/// The names in code spans of `text` (fenced blocks left out): every identifier in
/// them, so that `{"action", "tier"}` and `lost.by_kind.dns` name each part.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|code| {
            code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The names in the first column of the tables of fields in `text` (a table whose
/// header's first cell is `field`, or whose first row starts with a name).
fn table_fields(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut table: Option<bool> = None;
    for line in text.lines() {
        let Some(row) = line.strip_prefix('|') else {
            table = None;
            continue;
        };
        let first = row.split('|').next().unwrap_or_default().trim();
        let of_fields = *table.get_or_insert(first == "field" || first.starts_with('`'));
        if of_fields && first.starts_with('`') {
            out.extend(first.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    out
}

#[test]
fn the_kind_row_and_sections_name_every_kind() {
    let row = DOCS
        .lines()
        .find(|l| l.starts_with("| `kind` |"))
        .expect("docs/events.md has the `kind` row");
    let listed: BTreeSet<&str> = row.split('`').skip(3).step_by(2).collect();
    let kinds: BTreeSet<&str> = EventDetail::KINDS.iter().copied().collect();
    assert_eq!(listed, kinds, "the `kind` row of docs/events.md");
    let types = types();
    // The type's own variants are the kinds (less a subscriber's `missed` notice and
    // `other`, what a reader makes of a kind it does not know).
    let variants: BTreeSet<&str> = types
        .values("EventDetail")
        .into_iter()
        .filter(|k| *k != "missed")
        .collect();
    assert_eq!(variants, kinds, "EventDetail's variants and KINDS");
    for kind in kinds {
        kind_section(kind);
    }
}

#[test]
fn every_field_is_documented_where_it_belongs_and_every_documented_field_exists() {
    let types = types();
    let line = types.struct_fields("EventLine");
    let task = types.all_written(types.struct_fields("TaskLine"));
    let violation = types.all_written(types.struct_fields("ViolationLine"));
    // The line's own fields beside the kind's (`host`, `tainted_by`, …).
    let own: BTreeSet<String> = types
        .written(line)
        .into_keys()
        .chain(["kind".to_owned()])
        .collect();
    let common = section(DOCS, |h| h == "## Fields of every event");
    let violations = section(DOCS, |h| h == "## Violations");
    let mut missing = Vec::new();
    for f in own.iter().filter(|f| !mentioned(DOCS).contains(*f)) {
        missing.push(format!("`{f}` (every event's) is nowhere"));
    }
    for f in task.iter().filter(|f| !mentioned(&common).contains(*f)) {
        missing.push(format!("`{f}` is not in \"Fields of every event\""));
    }
    for f in violation
        .iter()
        .filter(|f| !mentioned(&violations).contains(*f))
    {
        missing.push(format!("`{f}` is not in \"Violations\""));
    }
    for f in table_fields(&common) {
        if !own.contains(&f) && !task.contains(&f) {
            missing.push(format!(
                "\"Fields of every event\" names `{f}`, which no line has"
            ));
        }
    }
    for f in table_fields(&violations) {
        if !violation.contains(&f) {
            missing.push(format!(
                "\"Violations\" names `{f}`, which no violation has"
            ));
        }
    }
    let variants: BTreeMap<&str, &Vec<Field>> = types.enums["EventDetail"]
        .iter()
        .map(|(k, f)| (k.as_str(), f))
        .collect();
    for kind in EventDetail::KINDS {
        let text = kind_section(kind);
        let said = mentioned(&text);
        let written = types.all_written(variants[kind]);
        for f in written.iter().filter(|f| !said.contains(*f)) {
            missing.push(format!("{kind}: `{f}` is not in its section"));
        }
        for f in table_fields(&text) {
            if !written.contains(&f)
                && !own.contains(&f)
                && !task.contains(&f)
                && !violation.contains(&f)
            {
                missing.push(format!("{kind}: its section names `{f}`, which it has not"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/events.md and the lines disagree:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_outcome_route_and_how_is_documented() {
    let types = types();
    let row = |text: &str, field: &str| -> BTreeSet<String> {
        let start = format!("| `{field}` |");
        let row = text
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no `{field}` row"));
        mentioned(row)
    };
    let outcomes = row(&section(DOCS, |h| h == "## Violations"), "outcome");
    let routes = row(&kind_section("route"), "route");
    let hows = mentioned(&kind_section("session_start"));
    let mut missing = Vec::new();
    for (what, values, said) in [
        ("outcome", types.values("Outcome"), &outcomes),
        ("route", types.values("Route"), &routes),
        ("how", types.values("How"), &hows),
    ] {
        for v in values.into_iter().filter(|v| !said.contains(*v)) {
            missing.push(format!("{what} `{v}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/events.md: {}",
        missing.join(", ")
    );
}
