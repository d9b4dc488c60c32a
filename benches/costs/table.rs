//! The printed result: a markdown table of the rows (medians), then one of their spread.

use crate::measure::Stat;

#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Ms,
    GibPerS,
    Mib,
}

impl Unit {
    fn show(self, value: f64) -> String {
        match self {
            Unit::Ms if value.abs() < 10.0 => format!("{value:.2} ms"),
            Unit::Ms => format!("{value:.1} ms"),
            Unit::GibPerS => format!("{value:.2} GiB/s"),
            Unit::Mib => format!("{value:.1} MiB"),
        }
    }

    fn spread(self, stat: &Stat) -> String {
        format!(
            "{} – {} ({})",
            self.show(stat.min),
            self.show(stat.max),
            stat.n
        )
    }
}

pub struct Row {
    pub id: &'static str,
    pub cost: String,
    pub unit: Unit,
    /// `median` is what the table shows (for a bound such as peak RSS, the worst round).
    pub ours: Stat,
    pub baseline: Option<(String, Stat)>,
    pub ratio: Option<f64>,
    pub goal: String,
    pub met: bool,
    /// Why the row was not measured (then `ours`, `baseline`, `ratio` and `met` mean nothing).
    pub not_measured: Option<String>,
}

pub fn print(rows: &[Row]) {
    println!("| row | cost | phantom_ci | baseline, same run | ratio | goal | met? |");
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        if let Some(why) = &row.not_measured {
            println!(
                "| {} | {} | not measured: {why} | — | — | {} | — |",
                row.id, row.cost, row.goal
            );
            continue;
        }
        let baseline = match &row.baseline {
            Some((what, stat)) => format!("{what}: {}", row.unit.show(stat.median)),
            None => "—".into(),
        };
        let ratio = row.ratio.map_or_else(|| "—".into(), |r| format!("{r:.2}×"));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.id,
            row.cost,
            row.unit.show(row.ours.median),
            baseline,
            ratio,
            row.goal,
            if row.met { "yes" } else { "**no**" }
        );
    }
    println!();
    println!("Spread: lowest – highest (rounds)");
    println!();
    println!("| row | phantom_ci | baseline |");
    println!("|---|---|---|");
    for row in rows.iter().filter(|row| row.not_measured.is_none()) {
        let baseline = row
            .baseline
            .as_ref()
            .map_or_else(|| "—".into(), |(_, stat)| row.unit.spread(stat));
        println!(
            "| {} | {} | {} |",
            row.id,
            row.unit.spread(&row.ours),
            baseline
        );
    }
}
