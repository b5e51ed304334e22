//! Date rounding in a time zone, as Elasticsearch's `date_histogram` and
//! date math do it: calendar units (a month, a quarter, a local day that is
//! 23 or 25 hours long across a DST change) and fixed intervals rounded in
//! local time. Instants are epoch milliseconds (UTC).

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, Offset,
    TimeZone, Timelike, Utc,
};

/// A `time_zone` parameter: an offset (`+02:00`, `-0530`) or an IANA name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    pub const UTC: Zone = Zone::Fixed(FixedOffset::east_opt(0).expect("zero offset"));

    pub fn parse(text: &str) -> Result<Zone, String> {
        let text = text.trim();
        if super::datemath::is_utc(text) {
            return Ok(Zone::UTC);
        }
        if let Some(offset) = parse_offset(text) {
            return Ok(Zone::Fixed(offset));
        }
        text.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| format!("unknown time zone [{text}]: use an offset such as +02:00 or an IANA name such as Europe/Berlin"))
    }

    pub fn is_utc(&self) -> bool {
        *self == Zone::UTC
    }

    /// The offset from UTC in force at `ms`, in milliseconds.
    pub fn offset_ms(&self, ms: i64) -> i64 {
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        let seconds = match self {
            Zone::Fixed(offset) => offset.local_minus_utc(),
            Zone::Named(tz) => tz
                .offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc(),
        };
        i64::from(seconds) * 1000
    }

    /// The instants a local time stands for (none in a DST gap, two in an overlap).
    fn instants_of(&self, local: &NaiveDateTime) -> LocalResult<i64> {
        match self {
            Zone::Fixed(offset) => offset
                .from_local_datetime(local)
                .map(|t| t.timestamp_millis()),
            Zone::Named(tz) => tz.from_local_datetime(local).map(|t| t.timestamp_millis()),
        }
    }

    /// The instant of `local` that is latest but not after `not_after`;
    /// a time in a DST gap means the first instant after the gap.
    fn resolve(&self, local: NaiveDateTime, not_after: i64) -> Option<i64> {
        match self.instants_of(&local) {
            LocalResult::Single(t) => Some(t),
            LocalResult::Ambiguous(early, late) => {
                Some(if late <= not_after { late } else { early })
            }
            LocalResult::None => {
                // In a DST gap: the first instant whose local time is at or
                // after `local` (gaps are at most a day long: Samoa, 2011).
                let target = local_ms(&local)?;
                const DAY: i64 = 86_400_000;
                let (mut lo, mut hi) = (target.checked_sub(2 * DAY)?, target.checked_add(2 * DAY)?);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if mid + self.offset_ms(mid) >= target {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                Some(lo)
            }
        }
    }

    /// The instant of a local time given as milliseconds of a naive
    /// clock (the earlier one in an overlap, the gap's end in a gap).
    pub fn local_to_utc(&self, local_ms: i64) -> Option<i64> {
        let naive = DateTime::<Utc>::from_timestamp_millis(local_ms)?.naive_utc();
        self.resolve(naive, i64::MIN)
    }

    /// Format an instant in this zone the way Elasticsearch prints
    /// `strict_date_optional_time` (`2024-03-31T00:00:00.000+01:00`, `Z` for UTC).
    pub fn format(&self, ms: i64) -> String {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(ms) else {
            return ms.to_string();
        };
        if self.is_utc() {
            return utc.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        }
        let offset = FixedOffset::east_opt((self.offset_ms(ms) / 1000) as i32)
            .unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
        utc.with_timezone(&offset)
            .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string()
    }
}

fn local_ms(local: &NaiveDateTime) -> Option<i64> {
    Some(local.and_utc().timestamp_millis())
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 18 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// A calendar unit of `calendar_interval` (and of rate units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    /// `1M`, `month`, `1q`, `quarter`, `1y`, `year`, `1w`, `week`, `1d`, …
    pub fn parse(text: &str) -> Option<Unit> {
        Some(match text.trim() {
            "1s" | "second" => Unit::Second,
            "1m" | "minute" => Unit::Minute,
            "1h" | "hour" => Unit::Hour,
            "1d" | "day" => Unit::Day,
            "1w" | "week" => Unit::Week,
            "1M" | "month" => Unit::Month,
            "1q" | "quarter" => Unit::Quarter,
            "1y" | "year" => Unit::Year,
            _ => return None,
        })
    }

    /// The unit's nominal length.
    pub fn nominal_ms(self) -> i64 {
        const DAY: i64 = 86_400_000;
        match self {
            Unit::Second => 1000,
            Unit::Minute => 60_000,
            Unit::Hour => 3_600_000,
            Unit::Day => DAY,
            Unit::Week => 7 * DAY,
            Unit::Month => 30 * DAY,
            Unit::Quarter => 91 * DAY,
            Unit::Year => 365 * DAY,
        }
    }

    /// Months in the unit (month-based units only).
    pub fn months(self) -> Option<i64> {
        match self {
            Unit::Month => Some(1),
            Unit::Quarter => Some(3),
            Unit::Year => Some(12),
            _ => None,
        }
    }
}

/// A `date_histogram`'s bucket width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Interval {
    Calendar(Unit),
    /// Milliseconds, rounded in local time from the epoch.
    Fixed(i64),
}

impl Interval {
    fn nominal_ms(self) -> i64 {
        match self {
            Interval::Calendar(unit) => unit.nominal_ms(),
            Interval::Fixed(ms) => ms,
        }
    }
}

/// The start of the bucket holding `ms`.
pub fn floor(ms: i64, interval: Interval, zone: Zone) -> Option<i64> {
    let local = ms.checked_add(zone.offset_ms(ms))?;
    let naive = DateTime::<Utc>::from_timestamp_millis(local)?.naive_utc();
    let date = naive.date();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0);
    let floored: NaiveDateTime = match interval {
        Interval::Fixed(width) => {
            let start = local.checked_sub(local.rem_euclid(width.max(1)))?;
            DateTime::<Utc>::from_timestamp_millis(start)?.naive_utc()
        }
        Interval::Calendar(unit) => match unit {
            Unit::Second => date.and_hms_opt(naive.hour(), naive.minute(), naive.second())?,
            Unit::Minute => date.and_hms_opt(naive.hour(), naive.minute(), 0)?,
            Unit::Hour => date.and_hms_opt(naive.hour(), 0, 0)?,
            Unit::Day => midnight(date)?,
            Unit::Week => midnight(date.checked_sub_signed(Duration::days(i64::from(
                date.weekday().num_days_from_monday(),
            )))?)?,
            Unit::Month => midnight(NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?)?,
            Unit::Quarter => midnight(NaiveDate::from_ymd_opt(
                date.year(),
                (date.month0() / 3) * 3 + 1,
                1,
            )?)?,
            Unit::Year => midnight(NaiveDate::from_ymd_opt(date.year(), 1, 1)?)?,
        },
    };
    zone.resolve(floored, ms)
}

/// The start of the bucket after the one starting at `start`.
pub fn next(start: i64, interval: Interval, zone: Zone) -> Option<i64> {
    let nominal = interval.nominal_ms();
    // Buckets differ from their nominal length by less than half of it
    // (a 23-hour day, a 28-day month): one of these probes lands in the
    // next bucket.
    for probe in [nominal, nominal + nominal / 2] {
        let candidate = floor(start.checked_add(probe)?, interval, zone)?;
        if candidate > start {
            return Some(candidate);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    fn berlin() -> Zone {
        Zone::parse("Europe/Berlin").unwrap()
    }

    #[test]
    fn zones_parse() {
        assert_eq!(Zone::parse("UTC").unwrap(), Zone::UTC);
        assert_eq!(Zone::parse("+00:00").unwrap(), Zone::UTC);
        assert_eq!(Zone::parse("+02:00").unwrap().offset_ms(0), 7_200_000);
        assert_eq!(Zone::parse("-0530").unwrap().offset_ms(0), -19_800_000);
        assert_eq!(Zone::parse("-03").unwrap().offset_ms(0), -10_800_000);
        assert!(Zone::parse("Mars/Olympus")
            .unwrap_err()
            .contains("Mars/Olympus"));
        assert!(Zone::parse("+25:00").is_err());
    }

    #[test]
    fn months_quarters_years_in_utc() {
        let month = Interval::Calendar(Unit::Month);
        let t = ms("2024-02-29T13:00:00Z");
        assert_eq!(floor(t, month, Zone::UTC), Some(ms("2024-02-01T00:00:00Z")));
        assert_eq!(
            next(ms("2024-01-01T00:00:00Z"), month, Zone::UTC),
            Some(ms("2024-02-01T00:00:00Z"))
        );
        assert_eq!(
            next(ms("2024-02-01T00:00:00Z"), month, Zone::UTC),
            Some(ms("2024-03-01T00:00:00Z"))
        );
        let quarter = Interval::Calendar(Unit::Quarter);
        assert_eq!(
            floor(t, quarter, Zone::UTC),
            Some(ms("2024-01-01T00:00:00Z"))
        );
        assert_eq!(
            next(ms("2024-10-01T00:00:00Z"), quarter, Zone::UTC),
            Some(ms("2025-01-01T00:00:00Z"))
        );
        let year = Interval::Calendar(Unit::Year);
        assert_eq!(
            next(ms("2024-01-01T00:00:00Z"), year, Zone::UTC),
            Some(ms("2025-01-01T00:00:00Z"))
        );
        // Weeks start on Monday (2024-01-04 is a Thursday).
        let week = Interval::Calendar(Unit::Week);
        assert_eq!(
            floor(ms("2024-01-04T10:00:00Z"), week, Zone::UTC),
            Some(ms("2024-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn local_days_across_daylight_saving() {
        let day = Interval::Calendar(Unit::Day);
        // 2024-03-31: Berlin springs forward at 02:00 (a 23-hour day).
        let start = floor(ms("2024-03-31T12:00:00+02:00"), day, berlin()).unwrap();
        assert_eq!(start, ms("2024-03-31T00:00:00+01:00"));
        let end = next(start, day, berlin()).unwrap();
        assert_eq!(end, ms("2024-04-01T00:00:00+02:00"));
        assert_eq!(end - start, 23 * 3_600_000);
        // 2024-10-27: falls back (a 25-hour day).
        let start = floor(ms("2024-10-27T23:59:00+01:00"), day, berlin()).unwrap();
        assert_eq!(next(start, day, berlin()).unwrap() - start, 25 * 3_600_000);
        // Hours through the repeated hour 02:00–03:00 are distinct buckets.
        let hour = Interval::Calendar(Unit::Hour);
        let first = ms("2024-10-27T02:00:00+02:00");
        let second = next(first, hour, berlin()).unwrap();
        assert_eq!(second, ms("2024-10-27T02:00:00+01:00"));
        assert_eq!(floor(second + 1_800_000, hour, berlin()), Some(second));
        // Fixed intervals round in local time too: a 1d bucket starts at local midnight.
        assert_eq!(
            floor(
                ms("2024-07-01T01:30:00+02:00"),
                Interval::Fixed(86_400_000),
                berlin()
            ),
            Some(ms("2024-07-01T00:00:00+02:00"))
        );
        // A month in Berlin starts at local midnight.
        assert_eq!(
            floor(
                ms("2024-04-15T00:00:00Z"),
                Interval::Calendar(Unit::Month),
                berlin()
            ),
            Some(ms("2024-04-01T00:00:00+02:00"))
        );
        assert_eq!(
            Zone::parse("+02:00")
                .unwrap()
                .format(ms("2024-04-01T00:00:00+02:00")),
            "2024-04-01T00:00:00.000+02:00"
        );
        assert_eq!(Zone::UTC.format(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_day_that_starts_in_a_gap() {
        // America/Sao_Paulo moved clocks from 00:00 to 01:00 on 2018-11-04.
        let zone = Zone::parse("America/Sao_Paulo").unwrap();
        let day = Interval::Calendar(Unit::Day);
        let start = floor(ms("2018-11-04T12:00:00-02:00"), day, zone).unwrap();
        assert_eq!(start, ms("2018-11-04T01:00:00-02:00"));
    }
}
