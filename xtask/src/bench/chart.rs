//! bench-ratios.png, drawn by matplotlib.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::util::{self, log};

const CHART_PY: &str = r#"
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
r = json.load(open(sys.argv[1]))
workloads = [w["name"] for w in r["workloads"]]
setups = [s["name"] for s in r["setups"] if s["available"] and s["name"] != "none"]
fig, ax = plt.subplots(figsize=(11, 5))
width = 0.8 / max(len(setups), 1)
for i, s in enumerate(setups):
    ys = [(r["summary"].get(w, {}).get(s, {}) or {}).get("ratio_to_none") or 0 for w in workloads]
    xs = [j + (i - (len(setups) - 1) / 2) * width for j in range(len(workloads))]
    bars = ax.bar(xs, ys, width, label=s)
    for x, y in zip(xs, ys):
        if y:
            ax.text(x, y, f"{y:.2f}", ha="center", va="bottom", fontsize=6, rotation=90)
ax.set_yscale("log")
ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
ax.axhline(1.0, color="black", linewidth=0.8)
ax.set_xticks(range(len(workloads)))
ax.set_xticklabels(workloads)
ax.set_ylabel("median time / median with nothing attached (log scale)")
m = r["machine"]
ax.set_title(f"guard benchmark: Linux {m['kernel']}, {m['nproc']} CPUs, {r['params']['rounds']} rounds")
ax.legend(fontsize=8, ncol=4)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
"#;

/// bench-ratios.png through matplotlib in a venv under target/ (made on first use).
pub(super) fn chart(json_path: &Path, png: &Path) -> Result<()> {
    let venv = util::target_dir().join("bench-venv");
    let python = venv.join("bin/python");
    let has_mpl = |py: &Path| {
        util::output(Command::new(py).args(["-c", "import matplotlib"]))
            .is_ok_and(|o| o.status.success())
    };
    if !has_mpl(&python) {
        log!("chart: making a venv with matplotlib in {}", venv.display());
        util::stdout_of(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        util::stdout_of(Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "matplotlib",
        ]))?;
    }
    util::stdout_of(
        Command::new(&python)
            .args(["-c", CHART_PY])
            .arg(json_path)
            .arg(png),
    )
    .map(|_| ())
}
