//! Elasticsearch date values in queries: formats (`epoch_millis`,
//! `epoch_second`, `strict_date_optional_time`, simple Joda-style patterns)
//! and date math (`now-15m`, `now/d`, `2024-01-01||+1M/d`).

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use serde_json::Value;

use crate::model::log::parse_date_string;

/// Whether a `time_zone` parameter means UTC.
pub fn is_utc(tz: &str) -> bool {
    matches!(
        tz.trim().to_ascii_lowercase().as_str(),
        "" | "utc" | "z" | "+00:00" | "-00:00" | "+0000" | "etc/utc" | "gmt" | "+00" | "00:00"
    )
}

/// Marks the time zone a `range` query's `time_zone` gave, appended to its
/// `format` (so every reader of the bound, from compilation to partition
/// pruning and the live tail, resolves it the same way).
const ZONE_MARK: &str = "\u{1}time_zone=";

/// `format` carrying `time_zone` for [`resolve`].
pub fn with_time_zone(format: Option<&str>, time_zone: &str) -> String {
    format!(
        "{}{ZONE_MARK}{}",
        format.unwrap_or("strict_date_optional_time||epoch_millis"),
        time_zone.trim()
    )
}

/// Resolve a date bound to nanoseconds. `round_up` is for upper inclusive
/// and lower exclusive bounds, where `now/d` means the end of the day.
/// A `time_zone` in `format` (see [`with_time_zone`]) applies to dates
/// without an offset and to rounding, as in Elasticsearch; epoch numbers
/// and `now` are instants.
pub fn resolve(
    value: &Value,
    format: Option<&str>,
    now_ms: i64,
    round_up: bool,
) -> Result<i64, String> {
    if let Some((plain, zone)) = format.and_then(|f| f.split_once(ZONE_MARK)) {
        let zone = super::calendar::Zone::parse(zone)?;
        if !zone.is_utc() {
            return resolve_zoned(value, plain, now_ms, round_up, zone);
        }
        return resolve(value, Some(plain), now_ms, round_up);
    }
    let text = match value {
        Value::Number(n) => {
            let per = if format.is_some_and(|f| f.contains("epoch_second")) {
                1_000_000_000
            } else {
                1_000_000
            };
            let exact = match n.as_i64() {
                Some(whole) => epoch_ns(whole as f64, Some(whole), per),
                None => epoch_ns(n.as_f64().ok_or("invalid number")?, None, per),
            };
            return exact.ok_or_else(|| format!("date [{n}] is out of range"));
        }
        Value::String(s) => s.trim(),
        other => return Err(format!("cannot parse date from {other}")),
    };
    let (anchor, math) = if let Some(rest) = text.strip_prefix("now") {
        (now_ms.saturating_mul(1_000_000), rest)
    } else if let Some((date, math)) = text.split_once("||") {
        (parse_with_format(date, format)?, math)
    } else {
        return parse_with_format(text, format);
    };
    apply_math(anchor, math, round_up).ok_or_else(|| format!("invalid date math [{text}]"))
}

fn resolve_zoned(
    value: &Value,
    format: &str,
    now_ms: i64,
    round_up: bool,
    zone: super::calendar::Zone,
) -> Result<i64, String> {
    let text = match value {
        Value::String(s) => s.trim(),
        // Epoch numbers are instants.
        _ => return resolve(value, Some(format), now_ms, round_up),
    };
    let to_local = |utc_ns: i64| {
        utc_ns.checked_add(
            zone.offset_ms(utc_ns.div_euclid(1_000_000))
                .saturating_mul(1_000_000),
        )
    };
    let to_utc = |local_ns: i64| -> Option<i64> {
        let ms = zone.local_to_utc(local_ns.div_euclid(1_000_000))?;
        ms.checked_mul(1_000_000)?
            .checked_add(local_ns.rem_euclid(1_000_000))
    };
    let invalid = || format!("invalid date math [{text}]");
    // A date string: local time unless it carries an offset.
    let parse_local = |date: &str| -> Result<i64, String> {
        let parsed = parse_with_format(date, Some(format))?;
        if has_offset(date) || date.bytes().all(|b| b.is_ascii_digit()) {
            to_local(parsed).ok_or_else(invalid)
        } else {
            Ok(parsed)
        }
    };
    let (anchor_local, math) = if let Some(rest) = text.strip_prefix("now") {
        (
            to_local(now_ms.saturating_mul(1_000_000)).ok_or_else(invalid)?,
            rest,
        )
    } else if let Some((date, math)) = text.split_once("||") {
        (parse_local(date)?, math)
    } else {
        return to_utc(parse_local(text)?).ok_or_else(invalid);
    };
    let local = apply_math(anchor_local, math, round_up).ok_or_else(invalid)?;
    to_utc(local).ok_or_else(invalid)
}

/// Whether a date string names its offset (`Z`, `+02:00`, `-0500`).
fn has_offset(text: &str) -> bool {
    let Some(time) = text.find(['T', ' ']).map(|i| &text[i + 1..]) else {
        return false;
    };
    time.ends_with(['Z', 'z']) || time.contains(['+', '-'])
}

/// Epoch `units` (ms or s) to nanoseconds, exactly for whole numbers (a
/// product in f64 would round `1700000000123 ms` by up to 128 ns and move
/// a bound across the record it names). `None` when out of range.
fn epoch_ns(x: f64, whole: Option<i64>, ns_per_unit: i64) -> Option<i64> {
    if let Some(whole) = whole {
        return whole.checked_mul(ns_per_unit);
    }
    if !x.is_finite() {
        return None;
    }
    let int = x.trunc();
    if int.abs() >= 9.2e18 {
        return None;
    }
    let frac = ((x - int) * ns_per_unit as f64).round() as i64;
    (int as i64).checked_mul(ns_per_unit)?.checked_add(frac)
}

fn epoch_text_ns(text: &str, ns_per_unit: i64) -> Option<i64> {
    match text.parse::<i64>() {
        Ok(whole) => epoch_ns(whole as f64, Some(whole), ns_per_unit),
        Err(_) => epoch_ns(text.parse::<f64>().ok()?, None, ns_per_unit),
    }
}

fn parse_with_format(text: &str, format: Option<&str>) -> Result<i64, String> {
    let fail = || {
        format!(
            "failed to parse date field [{text}] with format [{}]",
            format.unwrap_or("strict_date_optional_time||epoch_millis")
        )
    };
    let formats: Vec<&str> = format
        .map(|f| f.split("||").collect())
        .unwrap_or_else(|| vec!["strict_date_optional_time", "epoch_millis"]);
    for f in formats {
        let parsed = match f.trim() {
            "epoch_millis" => epoch_text_ns(text, 1_000_000),
            "epoch_second" => epoch_text_ns(text, 1_000_000_000),
            "strict_date_optional_time"
            | "date_optional_time"
            | "strict_date_optional_time_nanos"
            | "date_time"
            | "strict_date_time"
            | "date"
            | "strict_date"
            | "basic_date_time" => {
                if text.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    parse_date_string(text)
                }
            }
            pattern => parse_pattern(text, pattern),
        };
        if let Some(ns) = parsed {
            return Ok(ns);
        }
    }
    Err(fail())
}

/// Joda-style patterns as chrono formats (the common subset).
fn parse_pattern(text: &str, pattern: &str) -> Option<i64> {
    let mut chrono_format = String::new();
    let mut rest = pattern;
    const MAP: [(&str, &str); 12] = [
        ("yyyy", "%Y"),
        ("MM", "%m"),
        ("dd", "%d"),
        ("HH", "%H"),
        ("mm", "%M"),
        ("ss", "%S"),
        ("SSS", "%3f"),
        ("XXX", "%:z"),
        ("Z", "%z"),
        ("'T'", "T"),
        ("uuuu", "%Y"),
        ("'Z'", "Z"),
    ];
    'outer: while !rest.is_empty() {
        for (joda, chrono) in MAP {
            if let Some(r) = rest.strip_prefix(joda) {
                chrono_format.push_str(chrono);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next()?;
        chrono_format.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if let Ok(t) = DateTime::parse_from_str(text, &chrono_format) {
        return t.timestamp_nanos_opt();
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, &chrono_format) {
        return t.and_utc().timestamp_nanos_opt();
    }
    chrono::NaiveDate::parse_from_str(text, &chrono_format)
        .ok()?
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp_nanos_opt()
}

fn apply_math(anchor_ns: i64, math: &str, round_up: bool) -> Option<i64> {
    let mut t: DateTime<Utc> = Utc.timestamp_nanos(anchor_ns);
    let chars: Vec<char> = math.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let op = chars[i];
        i += 1;
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let amount: i64 = if start == i {
            1
        } else {
            chars[start..i].iter().collect::<String>().parse().ok()?
        };
        let unit = *chars.get(i)?;
        i += 1;
        match op {
            '+' | '-' => {
                let n = if op == '-' { -amount } else { amount };
                // Amounts come from the request: every step is checked (a
                // panic here was found by cargo-fuzz: `2||-5555…w`).
                t = match unit {
                    'y' => add_months(t, n.checked_mul(12)?)?,
                    'M' => add_months(t, n)?,
                    'w' => t.checked_add_signed(Duration::try_weeks(n)?)?,
                    'd' => t.checked_add_signed(Duration::try_days(n)?)?,
                    'h' | 'H' => t.checked_add_signed(Duration::try_hours(n)?)?,
                    'm' => t.checked_add_signed(Duration::try_minutes(n)?)?,
                    's' => t.checked_add_signed(Duration::try_seconds(n)?)?,
                    _ => return None,
                };
            }
            '/' => {
                let floor = round_down(t, unit)?;
                t = if round_up {
                    let next = match unit {
                        'y' => add_months(floor, 12)?,
                        'M' => add_months(floor, 1)?,
                        'w' => floor.checked_add_signed(Duration::weeks(1))?,
                        'd' => floor.checked_add_signed(Duration::days(1))?,
                        'h' | 'H' => floor.checked_add_signed(Duration::hours(1))?,
                        'm' => floor.checked_add_signed(Duration::minutes(1))?,
                        's' => floor.checked_add_signed(Duration::seconds(1))?,
                        _ => return None,
                    };
                    next.checked_sub_signed(Duration::milliseconds(1))?
                } else {
                    floor
                };
            }
            _ => return None,
        }
    }
    t.timestamp_nanos_opt()
}

fn round_down(t: DateTime<Utc>, unit: char) -> Option<DateTime<Utc>> {
    let d = t.date_naive();
    Some(match unit {
        'y' => Utc.with_ymd_and_hms(d.year(), 1, 1, 0, 0, 0).single()?,
        'M' => Utc
            .with_ymd_and_hms(d.year(), d.month(), 1, 0, 0, 0)
            .single()?,
        'w' => {
            let monday = d - Duration::days(i64::from(d.weekday().num_days_from_monday()));
            monday.and_hms_opt(0, 0, 0)?.and_utc()
        }
        'd' => d.and_hms_opt(0, 0, 0)?.and_utc(),
        'h' | 'H' => d.and_hms_opt(t.hour(), 0, 0)?.and_utc(),
        'm' => d.and_hms_opt(t.hour(), t.minute(), 0)?.and_utc(),
        's' => d.and_hms_opt(t.hour(), t.minute(), t.second())?.and_utc(),
        _ => return None,
    })
}

fn add_months(t: DateTime<Utc>, months: i64) -> Option<DateTime<Utc>> {
    let months = i32::try_from(months).ok()?;
    if months >= 0 {
        t.checked_add_months(chrono::Months::new(months as u32))
    } else {
        t.checked_sub_months(chrono::Months::new(months.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_123; // 2023-11-14T22:13:20.123Z

    /// Found by cargo-fuzz (fuzz/fuzz_targets/date_math.rs): amounts and
    /// results beyond chrono's range are errors, not panics.
    #[test]
    fn extreme_date_math_is_an_error() {
        for text in [
            "2||-5555555555555555555w",
            "now+9223372036854775807w",
            "now-9223372036854775807s",
            "now+9223372036854775807y",
            "now+99999999999d",
            "2||+1000000000000h/y",
        ] {
            assert!(resolve(&json!(text), None, NOW, true).is_err(), "{text}");
        }
    }

    fn r(v: Value, f: Option<&str>, up: bool) -> i64 {
        resolve(&v, f, NOW, up).unwrap() / 1_000_000
    }

    #[test]
    fn time_zones_apply_to_local_dates_and_rounding() {
        let berlin = with_time_zone(None, "Europe/Berlin");
        let z = Some(berlin.as_str());
        // 2024-07-01T00:00 in Berlin is 22:00 UTC the day before.
        assert_eq!(r(json!("2024-07-01T00:00:00"), z, false), 1_719_784_800_000);
        assert_eq!(r(json!("2024-07-01"), z, false), 1_719_784_800_000);
        // Explicit offsets and epoch numbers are instants.
        assert_eq!(
            r(json!("2024-07-01T00:00:00Z"), z, false),
            1_719_792_000_000
        );
        assert_eq!(r(json!(1_719_792_000_000i64), z, false), 1_719_792_000_000);
        let millis = with_time_zone(Some("epoch_millis"), "+02:00");
        assert_eq!(
            r(json!("1719792000000"), Some(&millis), false),
            1_719_792_000_000
        );
        // now/d is midnight in the zone: NOW is 2023-11-14T22:13:20Z,
        // 23:13:20 in Berlin (CET).
        assert_eq!(r(json!("now/d"), z, false), 1_699_916_400_000);
        assert_eq!(
            r(json!("now/d"), z, true),
            1_699_916_400_000 + 86_400_000 - 1
        );
        let plus = with_time_zone(None, "+05:30");
        assert_eq!(
            r(json!("2024-01-01||/M"), Some(&plus), false),
            1_704_047_400_000
        );
        assert!(resolve(
            &json!("2024-01-01"),
            Some(&with_time_zone(None, "Nowhere/Land")),
            NOW,
            false
        )
        .is_err());
    }

    #[test]
    fn math_and_formats() {
        assert_eq!(r(json!("now"), None, false), NOW);
        assert_eq!(r(json!("now-15m"), None, false), NOW - 900_000);
        assert_eq!(r(json!("now/d"), None, false), 1_699_920_000_000);
        assert_eq!(
            r(json!("now/d"), None, true),
            1_699_920_000_000 + 86_400_000 - 1
        );
        assert_eq!(
            r(json!("now-1d/d"), None, false),
            1_699_920_000_000 - 86_400_000
        );
        assert_eq!(r(json!(NOW), Some("epoch_millis"), false), NOW);
        assert_eq!(
            r(json!("1700000000"), Some("epoch_second"), false),
            1_700_000_000_000
        );
        assert_eq!(r(json!("2023-11-14T22:13:20.123Z"), None, false), NOW);
        assert_eq!(
            r(json!("2023-11-14||+1d"), None, false),
            1_699_920_000_000 + 86_400_000
        );
        assert_eq!(
            r(
                json!("2023-11-14 22:13:20"),
                Some("yyyy-MM-dd HH:mm:ss"),
                false
            ),
            1_700_000_000_000
        );
        assert!(resolve(&json!("yesterday"), None, NOW, false).is_err());
        assert!(resolve(&json!("now-5x"), None, NOW, false).is_err());
    }
}
