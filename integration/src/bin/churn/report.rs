//! Per-lane figures: tasks/s, p50/p99 per cycle, outcomes per kind; and the side-by-side table.

use std::time::Duration;

use crate::workload::{Kind, Outcome, Record};

/// The figures of one lane.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Lane name.
    pub lane: String,
    /// Runtime type.
    pub runtime: String,
    /// Cycles run.
    pub cycles: usize,
    /// Exit 0 as expected.
    pub ok: usize,
    /// Failed as they must.
    pub failed_as_expected: usize,
    /// Anything else.
    pub unexpected: usize,
    /// Wall time of the cycles.
    pub wall: Duration,
    /// Cycle latency percentiles (ms).
    pub p50_ms: f64,
    /// 99th percentile (ms).
    pub p99_ms: f64,
    /// Slowest cycle (ms).
    pub max_ms: f64,
    /// The driver's own CPU time per cycle (ms), user + system.
    pub driver_cpu_ms: f64,
    /// Leak rows that differ, as text.
    pub leaks: Vec<String>,
    /// Every cycle's time, sorted: what the rounds of one lane are merged from.
    pub times: Vec<Duration>,
}

impl Figures {
    /// One lane's figures from its rounds (the lanes run interleaved, a round of each in
    /// turn, so that a drift of the machine's speed moves every lane alike): counts and wall
    /// times added, percentiles over all cycles, the driver's CPU weighted by cycles, every
    /// round's leaks.
    pub fn merged(rounds: Vec<Figures>) -> Option<Figures> {
        let mut rounds = rounds.into_iter();
        let mut all = rounds.next()?;
        for r in rounds {
            let cpu = all.driver_cpu_ms * all.cycles as f64 + r.driver_cpu_ms * r.cycles as f64;
            all.cycles += r.cycles;
            all.ok += r.ok;
            all.failed_as_expected += r.failed_as_expected;
            all.unexpected += r.unexpected;
            all.wall += r.wall;
            all.driver_cpu_ms = cpu / all.cycles.max(1) as f64;
            all.leaks.extend(r.leaks);
            all.times.extend(r.times);
        }
        all.times.sort();
        all.p50_ms = percentile(&all.times, 50.0);
        all.p99_ms = percentile(&all.times, 99.0);
        all.max_ms = percentile(&all.times, 100.0);
        Some(all)
    }

    /// Cycles per second of wall time.
    pub fn tasks_per_s(&self) -> f64 {
        self.cycles as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Nearest-rank percentile `p` (0..=100) of sorted `v`, in ms.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// Sorted cycle times of `records` (of `kind` when given).
pub fn times(records: &[Record], kind: Option<Kind>) -> Vec<Duration> {
    let mut v: Vec<Duration> = records
        .iter()
        .filter(|r| kind.is_none_or(|k| r.kind == k))
        .map(|r| r.took)
        .collect();
    v.sort();
    v
}

/// Outcome counts: (ok, failed as expected, unexpected).
pub fn outcomes(records: &[Record], kind: Option<Kind>) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for r in records.iter().filter(|r| kind.is_none_or(|k| r.kind == k)) {
        match r.outcome {
            Outcome::Ok => c.0 += 1,
            Outcome::FailedAsExpected(_) => c.1 += 1,
            Outcome::Unexpected(_) => c.2 += 1,
        }
    }
    c
}

/// Per-kind lines of a lane.
pub fn per_kind(records: &[Record], kinds: &[Kind]) -> String {
    let mut s = format!(
        "   {:<20} {:>7} {:>7} {:>9} {:>10} {:>9} {:>9}\n",
        "kind", "cycles", "ok", "failed ok", "unexpected", "p50 ms", "p99 ms"
    );
    for k in kinds {
        let t = times(records, Some(*k));
        let (ok, exp, unexp) = outcomes(records, Some(*k));
        let how = records
            .iter()
            .filter(|r| r.kind == *k)
            .find_map(|r| match &r.outcome {
                Outcome::FailedAsExpected(e) => Some(format!("  ({}: {:?})", e.step, e.code)),
                _ => None,
            })
            .unwrap_or_default();
        s.push_str(&format!(
            "   {:<20} {:>7} {:>7} {:>9} {:>10} {:>9.1} {:>9.1}{how}\n",
            k.name(),
            t.len(),
            ok,
            exp,
            unexp,
            percentile(&t, 50.0),
            percentile(&t, 99.0)
        ));
    }
    s
}

/// The first `n` unexpected outcomes, one per line.
pub fn unexpected_sample(records: &[Record], n: usize) -> String {
    records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Unexpected(e) => Some(format!("   {}: {e}\n", r.kind.name())),
            _ => None,
        })
        .take(n)
        .collect()
}

/// The side-by-side table of every lane, and the ratios of the wasmpod lanes against the
/// others.
pub fn summary(all: &[Figures]) -> String {
    let mut s = format!(
        "   {:<20} {:<27} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}\n",
        "lane",
        "runtime",
        "cycles",
        "ok",
        "fail ok",
        "unexp",
        "wall s",
        "tasks/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "leaks"
    );
    for f in all {
        s.push_str(&format!(
            "   {:<20} {:<27} {:>6} {:>6} {:>7} {:>5} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>7}\n",
            f.lane,
            f.runtime,
            f.cycles,
            f.ok,
            f.failed_as_expected,
            f.unexpected,
            f.wall.as_secs_f64(),
            f.tasks_per_s(),
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.leaks.len()
        ));
    }
    let wasmpod: Vec<&Figures> = all
        .iter()
        .filter(|f| f.runtime.contains("wasmpod"))
        .collect();
    let peers: Vec<&Figures> = all
        .iter()
        .filter(|f| !f.runtime.contains("wasmpod"))
        .collect();
    for w in &wasmpod {
        for p in &peers {
            s.push_str(&format!(
                "   ratio {} / {}: tasks/s {:.2}x, p50 {:.2}x, p99 {:.2}x (lower is faster for p50/p99)\n",
                w.lane,
                p.lane,
                w.tasks_per_s() / p.tasks_per_s().max(1e-9),
                w.p50_ms / p.p50_ms.max(1e-9),
                w.p99_ms / p.p99_ms.max(1e-9),
            ));
        }
    }
    s
}

/// One line per lane for scripts: `churn-result lane=... key=value ...`.
pub fn machine_line(f: &Figures, containerd: &str) -> String {
    format!(
        "churn-result containerd={containerd} lane={} runtime={} cycles={} ok={} failed_as_expected={} unexpected={} wall_s={:.2} tasks_per_s={:.2} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} driver_cpu_ms_per_cycle={:.3} leaks={}",
        f.lane,
        f.runtime,
        f.cycles,
        f.ok,
        f.failed_as_expected,
        f.unexpected,
        f.wall.as_secs_f64(),
        f.tasks_per_s(),
        f.p50_ms,
        f.p99_ms,
        f.max_ms,
        f.driver_cpu_ms,
        f.leaks.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest rank: p50 of 1..=10 ms is 5 ms, p99 is 10 ms.
    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert!((percentile(&v, 50.0) - 5.0).abs() < 1e-9);
        assert!((percentile(&v, 99.0) - 10.0).abs() < 1e-9);
        assert!((percentile(&[], 50.0)).abs() < 1e-9);
    }

    fn round(cycles: u64, wall_s: u64, cpu_ms: f64, leaks: &[&str]) -> Figures {
        let times: Vec<Duration> = (1..=cycles).map(Duration::from_millis).collect();
        Figures {
            lane: "wasmpod-hello".into(),
            runtime: "io.containerd.wasmpod.v1".into(),
            cycles: cycles as usize,
            ok: cycles as usize,
            failed_as_expected: 0,
            unexpected: 0,
            wall: Duration::from_secs(wall_s),
            p50_ms: percentile(&times, 50.0),
            p99_ms: percentile(&times, 99.0),
            max_ms: percentile(&times, 100.0),
            driver_cpu_ms: cpu_ms,
            leaks: leaks.iter().map(|l| l.to_string()).collect(),
            times,
        }
    }

    /// Rounds of a lane add up: tasks/s of all cycles over all wall time, percentiles over
    /// every cycle, CPU weighted by cycles, every round's leaks.
    #[test]
    fn the_rounds_of_a_lane_merge_into_one_lanes_figures() {
        let merged = Figures::merged(vec![
            round(10, 2, 1.0, &[]),
            round(30, 4, 2.0, &["mounts 3 -> 4"]),
        ])
        .unwrap();
        assert_eq!(merged.cycles, 40);
        assert!((merged.tasks_per_s() - 40.0 / 6.0).abs() < 1e-9);
        assert!((merged.driver_cpu_ms - 1.75).abs() < 1e-9);
        // 1..=10 and 1..=30 ms: 1 to 10 twice are the 20 fastest, so p50 is 10 ms.
        assert!((merged.p50_ms - 10.0).abs() < 1e-9);
        assert!((merged.max_ms - 30.0).abs() < 1e-9);
        assert_eq!(merged.leaks, ["mounts 3 -> 4"]);
        assert!(Figures::merged(Vec::new()).is_none());
    }
}
