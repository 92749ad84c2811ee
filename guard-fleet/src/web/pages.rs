//! The HTML pages: the same read models as the API, rendered by askama templates
//! (`templates/`, escaped by default; only the server's own SVG is marked safe).

use std::sync::Arc;

use askama::Template;
use axum::{
    Extension,
    extract::{Path, Query, State},
    response::{Html, IntoResponse, Response},
};
use guard_common::{
    protocol::{Outcome, SessionState},
    report::FileUse,
    story::{Item, NO_CALLS, Part, STORY_MAX},
};
use strum::VariantArray;

use super::{
    WebError, charts, csv, fmt,
    params::{self, HostParams, ListParams, OverviewParams, SessionIdParams, SessionParams},
};
use crate::{
    app::App,
    auth::Viewer,
    config::AlertRule,
    store::{
        alerts::{AlertRow, AlertStats},
        policy::{Assignment, GroupHosts, PolicyVersion, WouldStop},
        read::{
            Dim, DimPage, DimSort, HostPage, Overview, SessionDetail, SessionPage, SessionRow,
            Sort, Suggestions, Window,
        },
    },
};

/// The names of every variant of `T`: a filter's choices.
fn choices<T: VariantArray + Copy + Into<&'static str>>() -> Vec<&'static str> {
    T::VARIANTS.iter().map(|&v| v.into()).collect()
}

/// An error as a page.
pub struct PageError(WebError);

impl From<WebError> for PageError {
    fn from(e: WebError) -> Self {
        Self(e)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    nav: &'a str,
    viewer: &'a str,
    status: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let page = ErrorPage {
            nav: "",
            viewer: "",
            status: status.to_string(),
            message: self.0.to_string(),
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}

fn html(t: &impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render().map_err(WebError::from)?).into_response())
}

/// A chart, or nothing when it could not be drawn (the page still shows the
/// numbers).
fn chart(c: Result<String, charts::ChartError>) -> String {
    c.unwrap_or_else(|e| {
        tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "chart not drawn");
        String::new()
    })
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    nav: &'a str,
    viewer: &'a str,
    o: &'a Overview,
    /// The sessions list's `from` for this window (its first day): a click keeps
    /// the window, and the list counts what the cards count.
    from: String,
    /// The first hosts of the hosts page: silent ones first.
    hosts: &'a HostPage,
    stale_after: String,
    sessions_chart: String,
    bytes_chart: String,
    outcomes_chart: String,
}

/// `GET /`.
pub async fn overview(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<OverviewParams>,
) -> Result<Response, PageError> {
    let days = p.days().map_err(WebError::from)?;
    let o = app.overview(days).await.map_err(WebError::from)?;
    let from = Window::last(days, o.now_ms).from_date();
    let hosts = app
        .hosts(&HostParams {
            per_page: Some("20".to_owned()),
            ..HostParams::default()
        })
        .await?;
    html(&OverviewPage {
        from,
        hosts: &hosts,
        nav: "overview",
        viewer: &viewer.name,
        stale_after: humantime::format_duration(app.config.dashboard.stale_after).to_string(),
        sessions_chart: chart(charts::sessions_per_day(&o.per_day)),
        bytes_chart: chart(charts::bytes_per_day(&o.per_day)),
        outcomes_chart: chart(charts::bars(
            "Violations by outcome",
            &o.violations_by_outcome,
            true,
        )),
        o: &o,
    })
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage<'a> {
    nav: &'a str,
    viewer: &'a str,
    p: &'a SessionParams,
    page: &'a SessionPage,
    pages: i64,
    prev: Option<String>,
    next: Option<String>,
    by_start: String,
    by_duration: String,
    by_bytes: String,
    by_violations: String,
    outcomes: &'a [&'a str],
    states: &'a [&'a str],
    sorts: &'a [&'a str],
    /// Values seen in the last 90 days, for each filter's suggestions.
    suggest: Arc<Suggestions>,
    csv: String,
}

/// How long suggestions are kept: a new developer or host shows in a minute.
const SUGGESTIONS_FOR: std::time::Duration = std::time::Duration::from_secs(60);

async fn suggestions(app: &App) -> Result<Arc<Suggestions>, WebError> {
    if let Some(s) = app.suggestions.fresh(SUGGESTIONS_FOR) {
        return Ok(s);
    }
    let fresh = Arc::new(fetch_suggestions(app).await?);
    app.suggestions.put(Arc::clone(&fresh));
    Ok(fresh)
}

async fn fetch_suggestions(app: &App) -> Result<Suggestions, WebError> {
    let w = app.window(90);
    let s = &app.store;
    let (users, hosts, agents, repos, rules, dests) = tokio::try_join!(
        s.suggestions(Dim::Developers, w, 200),
        s.suggestions(Dim::Hosts, w, 200),
        s.suggestions(Dim::Agents, w, 50),
        s.suggestions(Dim::Repositories, w, 200),
        s.suggestions(Dim::Rules, w, 200),
        s.suggestions(Dim::Destinations, w, 200),
    )?;
    Ok(Suggestions {
        users,
        hosts,
        agents,
        repos,
        rules,
        dests: dests
            .into_iter()
            .map(|d| d.split_once('/').map_or(d.clone(), |(_, n)| n.to_owned()))
            .collect(),
    })
}

/// Rows a CSV export holds at most.
pub const CSV_MAX: u32 = 100_000;

/// `GET /sessions`.
pub async fn sessions(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<SessionParams>,
) -> Result<Response, PageError> {
    let q = app.sessions_query(&p).map_err(WebError::from)?;
    if params::wants_csv(p.format.as_deref()).map_err(WebError::from)? {
        let rows = app
            .store
            .sessions_list(&q, CSV_MAX)
            .await
            .map_err(WebError::from)?;
        return Ok(csv::sessions(&rows));
    }
    let (page, suggest) = tokio::try_join!(
        async { app.store.sessions(&q).await.map_err(WebError::from) },
        suggestions(&app)
    )?;
    let pages = ((page.total + i64::from(page.per_page) - 1) / i64::from(page.per_page)).max(1);
    html(&SessionsPage {
        nav: "sessions",
        viewer: &viewer.name,
        p: &p,
        pages,
        prev: (page.page > 1).then(|| p.on_page(page.page - 1)),
        next: (i64::from(page.page) < pages).then(|| p.on_page(page.page + 1)),
        by_start: p.sorted_by(Sort::Start),
        by_duration: p.sorted_by(Sort::Duration),
        by_bytes: p.sorted_by(Sort::Bytes),
        by_violations: p.sorted_by(Sort::Violations),
        outcomes: &choices::<Outcome>(),
        states: &choices::<SessionState>(),
        sorts: &choices::<Sort>(),
        suggest,
        csv: {
            let mut c = p.clone();
            c.page = None;
            c.per_page = None;
            let q = c.to_query_string();
            if q.is_empty() {
                "format=csv".to_owned()
            } else {
                format!("{q}&format=csv")
            }
        },
        page: &page,
    })
}

/// Files of one access and class, for the session page.
struct FileGroup<'a> {
    access: &'a str,
    class: &'a str,
    items: &'a [FileUse],
    omitted: u64,
}

#[derive(Template)]
#[template(path = "session.html")]
struct SessionPageT<'a> {
    nav: &'a str,
    viewer: &'a str,
    d: &'a SessionDetail,
    s: &'a SessionRow,
    files: Vec<FileGroup<'a>>,
    timeline: String,
    /// The session in order (`guard_common::story`), cut at [`STORY_MAX`] items;
    /// `story_more` counts the rest.
    story: Vec<Item>,
    story_more: usize,
    /// The declared calls and guard's decisions over time (SVG), when any.
    story_chart: String,
}

/// `GET /sessions/{id}`.
pub async fn session(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Query(p): Query<SessionIdParams>,
) -> Result<Response, PageError> {
    let d = app
        .store
        .session(&id, p.host.as_deref().filter(|h| !h.is_empty()))
        .await
        .map_err(WebError::from)?
        .ok_or(WebError::NoSession)?;
    let r = &d.report;
    let mut files = Vec::new();
    for (access, f) in [("read", &r.read), ("written", &r.written)] {
        for (class, b) in [
            ("secrets", &f.secrets),
            ("workspace", &f.workspace),
            ("outside", &f.outside),
            ("system", &f.system),
        ] {
            files.push(FileGroup {
                access,
                class,
                items: &b.items,
                omitted: b.omitted,
            });
        }
    }
    let mut story = guard_common::story::story(r);
    let story_more = story.len().saturating_sub(STORY_MAX);
    story.truncate(STORY_MAX);
    html(&SessionPageT {
        nav: "sessions",
        viewer: &viewer.name,
        s: &d.session,
        timeline: chart(charts::timeline(&d)),
        files,
        story,
        story_more,
        story_chart: guard_common::story::timeline::timeline(r)
            .svg()
            .unwrap_or_default(),
        d: &d,
    })
}

#[derive(Template)]
#[template(path = "packages.html")]
struct PackagesPage<'a> {
    nav: &'a str,
    viewer: &'a str,
    now_ms: i64,
    rows: &'a [crate::store::read::InventoryRow],
    max: i64,
}

/// `GET /packages`: the organisation's package inventory.
pub async fn packages(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, PageError> {
    let rows = app.store.packages().await.map_err(WebError::from)?;
    html(&PackagesPage {
        nav: "packages",
        viewer: &viewer.name,
        now_ms: crate::store::now_ms(),
        rows: &rows,
        max: crate::store::read::INVENTORY_MAX,
    })
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage<'a> {
    nav: &'a str,
    viewer: &'a str,
    h: &'a HostPage,
    pages: i64,
    csv: String,
    prev: Option<String>,
    next: Option<String>,
}

/// `GET /hosts`.
pub async fn hosts(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<HostParams>,
) -> Result<Response, PageError> {
    if params::wants_csv(p.format.as_deref()).map_err(WebError::from)? {
        let all = HostParams {
            per_page: Some("1000".to_owned()),
            format: None,
            ..p.clone()
        };
        let mut hosts = Vec::new();
        for page in 1.. {
            let h = app
                .hosts(&HostParams {
                    page: Some(page.to_string()),
                    ..all.clone()
                })
                .await?;
            let last = h.hosts.len() < 1000;
            hosts.extend(h.hosts);
            if last || hosts.len() >= CSV_MAX as usize {
                break;
            }
        }
        return Ok(csv::hosts(&hosts));
    }
    let h = app.hosts(&p).await?;
    let pages = ((h.total + i64::from(h.per_page) - 1) / i64::from(h.per_page)).max(1);
    let link = |page: u32| {
        let mut q = p.clone();
        q.page = Some(page.to_string());
        q.format = None;
        serde_urlencoded::to_string(&q).unwrap_or_default()
    };
    html(&HostsPage {
        nav: "hosts",
        viewer: &viewer.name,
        csv: {
            let mut c = p.clone();
            c.page = None;
            c.per_page = None;
            c.format = Some("csv".to_owned());
            serde_urlencoded::to_string(&c).unwrap_or_default()
        },
        pages,
        prev: (h.page > 1).then(|| link(h.page - 1)),
        next: (i64::from(h.page) < pages).then(|| link(h.page + 1)),
        h: &h,
    })
}

#[derive(Template)]
#[template(path = "policies.html")]
struct PoliciesPage<'a> {
    nav: &'a str,
    viewer: &'a str,
    now_ms: i64,
    versions: &'a [PolicyVersion],
    assignments: &'a [(Assignment, GroupHosts)],
    /// Groups hosts name that have no assignment.
    unassigned: &'a [GroupHosts],
    /// For each assignment in observe: what its hosts would have stopped since.
    would: &'a [(String, Vec<WouldStop>)],
}

/// `GET /policies`: every group's assignment with its hosts (how many are not
/// enforcing it yet: drift), and every stored version.
pub async fn policies(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, PageError> {
    let versions = app.store.policies().await.map_err(WebError::from)?;
    let mut groups = app.store.group_hosts().await.map_err(WebError::from)?;
    let assignments: Vec<(Assignment, GroupHosts)> = app
        .store
        .assignments()
        .await
        .map_err(WebError::from)?
        .into_iter()
        .map(|a| {
            let hosts = groups
                .iter()
                .position(|g| g.group == a.group)
                .map(|i| groups.remove(i))
                .unwrap_or_default();
            (a, hosts)
        })
        .collect();
    let mut would = Vec::new();
    for (a, _) in assignments.iter().filter(|(a, _)| a.mode == "observe") {
        let rows = app
            .store
            .would_stop(&a.group, a.updated_ms)
            .await
            .map_err(WebError::from)?;
        would.push((a.group.clone(), rows));
    }
    html(&PoliciesPage {
        nav: "policies",
        viewer: &viewer.name,
        now_ms: crate::store::now_ms(),
        versions: &versions,
        assignments: &assignments,
        unassigned: &groups,
        would: &would,
    })
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage<'a> {
    nav: &'a str,
    viewer: &'a str,
    now_ms: i64,
    /// Each rule with its destinations' names and kinds.
    rules: Vec<(&'a AlertRule, Vec<(&'a str, &'static str)>)>,
    stats: &'a [AlertStats],
    recent: &'a [AlertRow],
    window: String,
}

/// Alerts listed under "Recent" on the alerts page.
pub const RECENT_ALERTS: i64 = 50;

/// `GET /alerts`: the alert rules, their deliveries per destination, and the
/// alerts queued last with what became of each.
pub async fn alerts(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, PageError> {
    let stats = app.store.alert_stats().await.map_err(WebError::from)?;
    let recent = app
        .store
        .recent_alerts(RECENT_ALERTS)
        .await
        .map_err(WebError::from)?;
    let a = &app.config.alerts;
    let in_force = app.alert_rules().await.map_err(WebError::from)?;
    let rules = in_force
        .iter()
        .map(|r| {
            let to =
                r.to.iter()
                    .map(|d| {
                        let kind = a.destination(d).map_or("?", |d| d.kind.as_str());
                        (d.as_str(), kind)
                    })
                    .collect();
            (r, to)
        })
        .collect();
    html(&AlertsPage {
        nav: "alerts",
        viewer: &viewer.name,
        now_ms: crate::store::now_ms(),
        rules,
        stats: &stats,
        recent: &recent,
        window: humantime::format_duration(a.window).to_string(),
    })
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage<'a> {
    nav: &'a str,
    viewer: &'a str,
    title: &'a str,
    /// What the list is (its `dim`'s name in links).
    kind: &'a str,
    l: &'a DimPage,
    /// A second list under the first (the rules page's outcomes).
    also: Option<&'a DimPage>,
    from: String,
    pages: i64,
    prev: Option<String>,
    next: Option<String>,
    sorts: Vec<(&'static str, String, bool)>,
    days: u32,
    csv: String,
}

/// Each list's title, its name in links, the sessions filter a row opens and
/// whether its rows show their days.
fn list_meta(dim: Dim) -> (&'static str, &'static str) {
    match dim {
        Dim::Developers => ("Developers", "developers"),
        Dim::Destinations => ("Destinations", "destinations"),
        Dim::Repositories => ("Repositories", "repositories"),
        Dim::Agents => ("Agents", "agents"),
        Dim::Hosts => ("Hosts", "hosts"),
        Dim::Rules => ("Rules broken", "rules"),
        Dim::Outcomes => ("Outcomes", "outcomes"),
    }
}

async fn list(
    app: &App,
    viewer: &Viewer,
    dim: Dim,
    p: &ListParams,
    also: Option<Dim>,
) -> Result<Response, PageError> {
    let (days, sort, page, per_page) = p.checked().map_err(WebError::from)?;
    let window = app.window(days);
    let per_day = dim.counts_violations();
    let (title, kind) = list_meta(dim);
    if params::wants_csv(p.format.as_deref()).map_err(WebError::from)? {
        let l = app
            .store
            .dimension(dim, window, sort, 1, CSV_MAX.min(1000), per_day)
            .await
            .map_err(WebError::from)?;
        let mut rows = l.rows;
        let mut next = 2;
        while rows.len() < usize::try_from(l.total).unwrap_or(0) && rows.len() < CSV_MAX as usize {
            let more = app
                .store
                .dimension(dim, window, sort, next, 1000, per_day)
                .await
                .map_err(WebError::from)?;
            if more.rows.is_empty() {
                break;
            }
            rows.extend(more.rows);
            next += 1;
        }
        return Ok(csv::dimension(dim, &window, &rows));
    }
    let l = app
        .store
        .dimension(dim, window, sort, page, per_page, per_day)
        .await
        .map_err(WebError::from)?;
    let also = match also {
        Some(d) => Some(
            app.store
                .dimension(d, window, DimSort::Sessions, 1, 100, true)
                .await
                .map_err(WebError::from)?,
        ),
        None => None,
    };
    let pages = ((l.total + i64::from(l.per_page) - 1) / i64::from(l.per_page)).max(1);
    let mut csv_params = p.clone();
    csv_params.page = None;
    csv_params.per_page = None;
    csv_params.format = Some("csv".to_owned());
    html(&ListPage {
        nav: kind,
        viewer: &viewer.name,
        title,
        kind,
        from: window.from_date(),
        pages,
        prev: (l.page > 1).then(|| p.link(Some(l.page - 1), None)),
        next: (i64::from(l.page) < pages).then(|| p.link(Some(l.page + 1), None)),
        sorts: DimSort::VARIANTS
            .iter()
            .filter(|s| {
                !dim.counts_violations()
                    || matches!(
                        s,
                        DimSort::Sessions | DimSort::Change | DimSort::Name | DimSort::Last
                    )
            })
            .map(|s| {
                let label = match (s, dim.counts_violations()) {
                    (DimSort::Sessions, true) => "violations",
                    _ => s.as_str(),
                };
                (label, p.link(None, Some(*s)), *s == sort)
            })
            .collect(),
        days,
        csv: serde_urlencoded::to_string(&csv_params).unwrap_or_default(),
        l: &l,
        also: also.as_ref(),
    })
}

/// `GET /developers`.
pub async fn developers(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<ListParams>,
) -> Result<Response, PageError> {
    list(&app, &viewer, Dim::Developers, &p, None).await
}

/// `GET /destinations`.
pub async fn destinations(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<ListParams>,
) -> Result<Response, PageError> {
    list(&app, &viewer, Dim::Destinations, &p, None).await
}

/// `GET /repositories`.
pub async fn repositories(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<ListParams>,
) -> Result<Response, PageError> {
    list(&app, &viewer, Dim::Repositories, &p, None).await
}

/// `GET /agents`.
pub async fn agents(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<ListParams>,
) -> Result<Response, PageError> {
    list(&app, &viewer, Dim::Agents, &p, None).await
}

/// `GET /rules`: rules, and outcomes under them.
pub async fn rules(
    State(app): State<Arc<App>>,
    Extension(viewer): Extension<Viewer>,
    Query(p): Query<ListParams>,
) -> Result<Response, PageError> {
    list(&app, &viewer, Dim::Rules, &p, Some(Dim::Outcomes)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{records, store::read::Event};

    #[test]
    fn a_hostile_session_renders_escaped() {
        let mut report = records::report("00000000000000a1", "<b>eve</b>", "https://x/<i>", true);
        report.commands.items[0].argv =
            vec!["sh".into(), "-c".into(), "<script>alert(1)</script>".into()];
        report.read.workspace.items[0].path = "/w/'; DROP TABLE sessions; --\"".into();
        report.violations.items[0].rule = "<img src=x onerror=alert(2)>".into();
        let session = SessionRow {
            host: "eu/<svg onload=alert(3)>".into(),
            session_uid: "m-b-00000000000000a1".into(),
            session_id: "00000000000000a1".into(),
            state: "ended".into(),
            agent: Some("codex".into()),
            agent_version: None,
            user_name: report.user.clone(),
            repo_url: Some("https://x/<i>".into()),
            repo_branch: Some("\"><script>".into()),
            started_ms: records::T0_MS,
            ended_ms: None,
            duration_ms: 1,
            commands: 3,
            files_read: 1,
            files_written: 1,
            secrets_read: 1,
            bytes_out: 1,
            bytes_in: 1,
            model_bytes_out: 1,
            violations: 2,
            updated_ms: records::T0_MS,
            host_started_ms: None,
        };
        let d = SessionDetail {
            session: session.clone(),
            uid: None,
            repo_commit: None,
            workspace: Some("<w>".into()),
            conversation_id: None,
            summary_seq: 1,
            report,
            events: vec![Event {
                ts_ms: 0,
                kind: "exec".into(),
                rule: None,
                outcome: None,
                text: "exec <script>".into(),
            }],
            flows: Vec::new(),
            other_hosts: vec!["<x>".into()],
        };
        let html = SessionPageT {
            nav: "sessions",
            viewer: "<v>",
            d: &d,
            s: &session,
            files: Vec::new(),
            timeline: String::new(),
            story: guard_common::story::story(&d.report),
            story_more: 0,
            story_chart: String::new(),
        }
        .render()
        .expect("render");
        for raw in [
            "<script",
            "<img",
            "<b>eve",
            "<svg onload",
            "<i>",
            "<w>",
            "<x>",
            "<v>",
        ] {
            assert!(!html.contains(raw), "{raw} unescaped");
        }
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
        assert!(html.contains("&#60;img src=x onerror=alert(2)&#62;"));
        // The link to the other host is percent-encoded, then escaped.
        assert!(html.contains("/sessions/m-b-00000000000000a1?host=%3Cx%3E"));
    }
}
