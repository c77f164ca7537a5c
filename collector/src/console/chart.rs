//! Charts drawn as SVG on the server: no script, no fonts or libraries to fetch, and a data
//! table beside every chart for screen readers and for copying into a spreadsheet.
//!
//! Values are integers (minor units, counts); they become floats only to place pixels.

use maud::{Markup, html};

/// One series of a stacked chart: its label, its CSS class (the colour) and one value per
/// category.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// `s0` .. `s7`: the stylesheet's palette.
    pub class: String,
    /// One value per category (never negative; negatives draw as zero).
    pub values: Vec<i64>,
}

const W: f64 = 720.0;
const H: f64 = 240.0;
const LEFT: f64 = 84.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

fn px(v: f64) -> String {
    format!("{v:.1}")
}

/// A "nice" axis maximum at or above `max` (1, 2 or 5 times a power of ten).
pub fn nice_max(max: i64) -> i64 {
    if max <= 0 {
        return 1;
    }
    let mut step: i64 = 1;
    while step.saturating_mul(10) <= max {
        step = step.saturating_mul(10);
    }
    for m in [1, 2, 5, 10] {
        let v = step.saturating_mul(m);
        if v >= max {
            return v;
        }
    }
    step.saturating_mul(10)
}

/// Stacked columns, one per category (months), with a legend, a value axis formatted by
/// `label`, and the same figures as a table.
pub fn stacked(
    id: &str,
    title: &str,
    categories: &[String],
    series: &[Series],
    label: &dyn Fn(i64) -> String,
) -> Markup {
    let totals: Vec<i64> = (0..categories.len())
        .map(|i| series.iter().map(|s| s.values.get(i).copied().unwrap_or(0).max(0)).sum())
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let n = categories.len().max(1) as f64;
    let slot = plot_w / n;
    let bar = (slot * 0.62).min(48.0);
    let y_of = |v: i64| TOP + plot_h - plot_h * (v as f64 / max as f64);
    let ticks: Vec<i64> = (0..=4).map(|k| max / 4 * k).collect();
    let title_id = format!("{id}-title");
    struct Rect<'a> {
        x: f64,
        y: f64,
        h: f64,
        class: &'a str,
        title: String,
    }
    let mut rects = Vec::new();
    let mut columns = Vec::new();
    for (i, cat) in categories.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        columns.push((x, cat));
        let mut base = 0_i64;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0).max(0);
            if v > 0 {
                let top = y_of(base + v);
                let h = y_of(base) - top;
                rects.push(Rect {
                    x,
                    y: top,
                    h,
                    class: &s.class,
                    title: format!("{cat} · {}: {}", s.label, label(v)),
                });
                base += v;
            }
        }
    }
    html! {
        figure class="chart" id=(id) {
            figcaption id=(title_id) { (title) }
            ul class="legend" aria-hidden="true" {
                @for s in series { li { span class={ "swatch " (s.class) } {} (s.label) } }
            }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-labelledby=(title_id) preserveAspectRatio="xMidYMid meet" {
                @for t in &ticks {
                    line class="grid" x1=(px(LEFT)) x2=(px(W - 8.0)) y1=(px(y_of(*t))) y2=(px(y_of(*t))) {}
                    text class="axis" x=(px(LEFT - 6.0)) y=(px(y_of(*t) + 4.0)) text-anchor="end" { (label(*t)) }
                }
                @for (x, cat) in &columns {
                    @let whole = short_month(cat);
                    @let (shown, cut) = fit(&whole, slot);
                    text class="axis" x=(px(x + bar / 2.0)) y=(px(H - 10.0)) text-anchor="middle" {
                        @if cut { title { (whole) } }
                        (shown)
                    }
                }
                @for r in &rects {
                    rect class={ "bar " (r.class) } x=(px(r.x)) y=(px(r.y)) width=(px(bar)) height=(px(r.h.max(0.5))) {
                        title { (r.title) }
                    }
                }
            }
            details {
                summary { "Figures as a table" }
                table {
                    thead { tr { th scope="col" { "" } @for s in series { th scope="col" class="num" { (s.label) } } } }
                    tbody {
                        @for (i, cat) in categories.iter().enumerate() {
                            tr {
                                th scope="row" { (cat) }
                                @for s in series { td class="num" { (label(s.values.get(i).copied().unwrap_or(0))) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `2026-03` as `Mar 26`; anything else unchanged.
/// Average width of one character of the 11 px axis font (a sans-serif), with some margin.
const AXIS_CHAR_W: f64 = 6.2;

/// `label` cut with an ellipsis to fit a column `slot` units wide, so neighbouring labels
/// (long department names) never overlap; the second value says whether it was cut.
fn fit(label: &str, slot: f64) -> (String, bool) {
    let room = ((slot - 4.0) / AXIS_CHAR_W).floor().max(2.0) as usize;
    if label.chars().count() <= room {
        return (label.to_owned(), false);
    }
    let mut cut: String = label.chars().take(room.saturating_sub(1)).collect();
    cut.push('…');
    (cut, true)
}

fn short_month(ym: &str) -> String {
    const NAMES: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let Some((y, m)) = ym.split_once('-') else { return ym.to_owned() };
    let name = m.parse::<usize>().ok().and_then(|m| NAMES.get(m.wrapping_sub(1)));
    match (name, y.get(2..)) {
        (Some(n), Some(yy)) => format!("{n} {yy}"),
        _ => ym.to_owned(),
    }
}

/// One bar of a horizontal bar chart.
#[derive(Clone, Debug)]
pub struct Bar {
    /// The label on its left.
    pub label: String,
    /// Where the label links to.
    pub href: Option<String>,
    /// The value.
    pub value: i64,
}

/// Horizontal bars, largest first as given, each label a link when it has one.
pub fn bars(id: &str, title: &str, items: &[Bar], label: &dyn Fn(i64) -> String) -> Markup {
    let max = items.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    html! {
        figure class="chart bars" id=(id) {
            figcaption { (title) }
            @if items.is_empty() { p class="muted" { "Nothing yet." } }
            ol {
                @for b in items {
                    li {
                        span class="bar-label" {
                            @if let Some(h) = &b.href { a href=(h) { (b.label) } } @else { (b.label) }
                        }
                        svg class="bar-track" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" {
                            rect class="bar s0" x="0" y="0" height="10" width=(px(100.0 * b.value.max(0) as f64 / max as f64)) {}
                        }
                        span class="bar-value num" { (label(b.value)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(12), 20);
        assert_eq!(nice_max(420), 500);
        assert_eq!(nice_max(1000), 1000);
    }

    #[test]
    fn a_stacked_chart_draws_one_rect_per_nonzero_value_and_a_table() {
        let s = vec![
            Series { label: "Expense".into(), class: "s0".into(), values: vec![100, 0] },
            Series { label: "Gateway".into(), class: "s1".into(), values: vec![50, 25] },
        ];
        let cats = vec!["2026-01".to_owned(), "2026-02".to_owned()];
        let out = stacked("c", "Spend", &cats, &s, &|v| v.to_string()).into_string();
        assert_eq!(out.matches("<rect").count(), 3);
        assert!(out.contains("Jan 26"));
        assert!(out.contains("<th scope=\"row\">2026-02</th>"));
    }

    #[test]
    fn long_axis_labels_are_cut_to_their_column_and_keep_the_whole_name_as_a_title() {
        let cats: Vec<String> = ["Sales", "wrkspc_legal_research", "platform"]
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let series =
            vec![Series { label: "Gateway".into(), class: "s1".into(), values: vec![1; 12] }];
        let many: Vec<String> = (0..12).map(|i| format!("{}{i}", cats[i % 3])).collect();
        let html = stacked("d", "By department", &many, &series, &|v| v.to_string()).into_string();
        assert!(html.contains("<title>wrkspc_legal_research1</title>"), "{html}");
        assert!(html.contains(">wrkspc…</text>"), "{html}");
        assert!(html.contains(">Sales0</text>"), "{html}");
        assert_eq!(fit("Engineering", 200.0), ("Engineering".to_owned(), false));
    }

    #[test]
    fn labels_are_escaped() {
        let items = vec![Bar { label: "<b>x</b>".into(), href: None, value: 3 }];
        let out = bars("b", "T", &items, &|v| v.to_string()).into_string();
        assert!(out.contains("&lt;b&gt;x&lt;/b&gt;"));
    }
}
