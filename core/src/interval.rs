//! The subset of PostgreSQL interval syntax that definitions accept
//! (`"5 years"`, `"2 days 04:00:00"`, `"90 minutes"`).
//!
//! Parsed here, in pure Rust, so that a definition is validated completely before it
//! reaches the database, and so that two spellings of the same span (`"5 years"` and
//! `"60 months"`) publish the same canonical definition. Every string accepted here is
//! also accepted by PostgreSQL's `interval` input with the same meaning; the canonical
//! form printed by [`Interval::canonical`] is one of them.

use std::fmt;

/// A span in PostgreSQL's own three fields: months, days and microseconds are kept
/// apart because their lengths vary (a month is not 30 days, a day is not always 24h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;

#[derive(Clone, Copy)]
enum Unit {
    Micros(i64),
    Days(i32),
    Months(i32),
}

fn unit(word: &str) -> Option<Unit> {
    Some(match word {
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => Unit::Micros(1),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => Unit::Micros(1_000),
        "second" | "seconds" | "s" | "sec" | "secs" => Unit::Micros(MICROS_PER_SECOND),
        "minute" | "minutes" | "m" | "min" | "mins" => Unit::Micros(MICROS_PER_MINUTE),
        "hour" | "hours" | "h" | "hr" | "hrs" => Unit::Micros(MICROS_PER_HOUR),
        "day" | "days" | "d" => Unit::Days(1),
        "week" | "weeks" | "w" => Unit::Days(7),
        "month" | "months" | "mon" | "mons" => Unit::Months(1),
        "year" | "years" | "y" | "yr" | "yrs" => Unit::Months(12),
        "decade" | "decades" => Unit::Months(120),
        _ => return None,
    })
}

/// The longest interval a definition may use (time guards and timers).
pub const MAX_YEARS: f64 = 1_000.0;

impl Interval {
    /// Parses the accepted subset. The error is one sentence meant for a DETAIL line.
    pub fn parse(input: &str) -> Result<Interval, String> {
        let text = input.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Err("empty interval".into());
        }
        if text.len() > 200 {
            return Err("interval text longer than 200 characters".into());
        }
        let mut iv = Interval::default();
        let overflow = || format!("interval {input:?} is out of range");
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let mut i = 0;
        let mut saw_clock = false;
        while i < tokens.len() {
            let tok = tokens[i];
            if tok.contains(':') {
                if saw_clock {
                    return Err(format!("interval {input:?} has two clock parts"));
                }
                saw_clock = true;
                let micros = parse_clock(tok).ok_or_else(|| {
                    format!("{tok:?} in interval {input:?} is not HH:MM or HH:MM:SS")
                })?;
                iv.micros = iv.micros.checked_add(micros).ok_or_else(overflow)?;
                i += 1;
                continue;
            }
            // A number, either followed by its unit as the next word or glued to it ("5d").
            let split = tok
                .find(|c: char| !(c.is_ascii_digit() || c == '+' || c == '-' || c == '.'))
                .unwrap_or(tok.len());
            let (num, glued_unit) = tok.split_at(split);
            if num.is_empty() {
                return Err(format!("expected a number in interval {input:?}, found {tok:?}"));
            }
            if num.contains('.') {
                return Err(format!(
                    "fractional amount {num:?} in interval {input:?}: use a smaller unit instead"
                ));
            }
            if num.starts_with('-') {
                return Err(format!("negative amount {num:?} in interval {input:?}"));
            }
            let n: i64 = num
                .trim_start_matches('+')
                .parse()
                .map_err(|_| format!("{num:?} in interval {input:?} is not a whole number"))?;
            let word = if glued_unit.is_empty() {
                i += 1;
                *tokens
                    .get(i)
                    .ok_or_else(|| format!("number {num} in interval {input:?} has no unit"))?
            } else {
                glued_unit
            };
            let u = unit(word).ok_or_else(|| {
                format!(
                    "unknown unit {word:?} in interval {input:?} (use microseconds, milliseconds, \
                     seconds, minutes, hours, days, weeks, months, years or decades)"
                )
            })?;
            match u {
                Unit::Micros(per) => {
                    let add = n.checked_mul(per).ok_or_else(overflow)?;
                    iv.micros = iv.micros.checked_add(add).ok_or_else(overflow)?;
                }
                Unit::Days(per) => {
                    let add = i32::try_from(n).ok().and_then(|n| n.checked_mul(per)).ok_or_else(overflow)?;
                    iv.days = iv.days.checked_add(add).ok_or_else(overflow)?;
                }
                Unit::Months(per) => {
                    let add = i32::try_from(n).ok().and_then(|n| n.checked_mul(per)).ok_or_else(overflow)?;
                    iv.months = iv.months.checked_add(add).ok_or_else(overflow)?;
                }
            }
            i += 1;
        }
        // PostgreSQL adds any interval to a timestamp, but one past its range (4713 BC to
        // 294276 AD) fails at run time: a timer due in 10^8 years stopped every timer.
        if iv.approx_years() > MAX_YEARS {
            return Err(format!("interval {input:?} is longer than {MAX_YEARS} years"));
        }
        Ok(iv)
    }

    /// The span in years, roughly (a month as 1/12 year, a year as 365.25 days).
    pub fn approx_years(&self) -> f64 {
        f64::from(self.months) / 12.0 + f64::from(self.days) / 365.25 + self.micros as f64 / (365.25 * 86_400e6)
    }

    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.days == 0 && self.micros == 0
    }

    /// One spelling per span, accepted by both [`Interval::parse`] and PostgreSQL.
    pub fn canonical(&self) -> String {
        self.to_string()
    }
}

fn parse_clock(tok: &str) -> Option<i64> {
    let parts: Vec<&str> = tok.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let h: i64 = parts[0].parse().ok()?;
    let m: i64 = parts[1].parse().ok()?;
    let s: i64 = if parts.len() == 3 { parts[2].parse().ok()? } else { 0 };
    if m >= 60 || s >= 60 {
        return None;
    }
    h.checked_mul(MICROS_PER_HOUR)?
        .checked_add(m * MICROS_PER_MINUTE)?
        .checked_add(s * MICROS_PER_SECOND)
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut push = |n: i64, one: &str, many: &str| {
            if n != 0 {
                parts.push(format!("{n} {}", if n == 1 { one } else { many }));
            }
        };
        push(i64::from(self.months / 12), "year", "years");
        push(i64::from(self.months % 12), "month", "months");
        push(i64::from(self.days), "day", "days");
        let mut us = self.micros;
        let hours = us / MICROS_PER_HOUR;
        us %= MICROS_PER_HOUR;
        let minutes = us / MICROS_PER_MINUTE;
        us %= MICROS_PER_MINUTE;
        let seconds = us / MICROS_PER_SECOND;
        us %= MICROS_PER_SECOND;
        push(hours, "hour", "hours");
        push(minutes, "minute", "minutes");
        push(seconds, "second", "seconds");
        push(us, "microsecond", "microseconds");
        if parts.is_empty() {
            return f.write_str("0 seconds");
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, micros: i64) -> Interval {
        Interval { months, days, micros }
    }

    #[test]
    fn refuses_intervals_longer_than_a_thousand_years() {
        assert!(Interval::parse("1000 years").is_ok());
        assert!(Interval::parse("999 years 11 months").is_ok());
        let e = Interval::parse("100000000 years").unwrap_err();
        assert!(e.contains("out of range") || e.contains("longer than 1000 years"), "{e}");
        assert!(Interval::parse("1001 years").unwrap_err().contains("longer than 1000 years"));
        assert!(Interval::parse("400000 days").unwrap_err().contains("longer than 1000 years"));
        assert!(Interval::parse("9000000 hours").unwrap_err().contains("longer than 1000 years"));
    }

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(Interval::parse("5 years").unwrap(), iv(60, 0, 0));
        assert_eq!(Interval::parse("60 months").unwrap(), iv(60, 0, 0));
        assert_eq!(Interval::parse("1 year 2 mons 3 days").unwrap(), iv(14, 3, 0));
        assert_eq!(Interval::parse("2 weeks").unwrap(), iv(0, 14, 0));
        assert_eq!(Interval::parse("90 minutes").unwrap(), iv(0, 0, 90 * MICROS_PER_MINUTE));
        assert_eq!(Interval::parse("1 day 04:30").unwrap(), iv(0, 1, 4 * MICROS_PER_HOUR + 30 * MICROS_PER_MINUTE));
        assert_eq!(Interval::parse("00:00:05").unwrap(), iv(0, 0, 5 * MICROS_PER_SECOND));
        assert_eq!(Interval::parse(" 3D ").unwrap(), iv(0, 3, 0));
        assert_eq!(Interval::parse("1 second 500 ms").unwrap(), iv(0, 0, 1_500_000));
    }

    #[test]
    fn rejects_what_is_not_in_the_subset() {
        for bad in ["", "   ", "five years", "5", "5 fortnights", "-1 day", "1.5 hours", "1 day 25:61", "10:00 11:00", "99999999999 years"] {
            assert!(Interval::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn canonical_form_round_trips() {
        for text in ["5 years", "1 year 2 months", "3 days 04:00:00", "90 minutes", "1 second", "250 ms", "0 days"] {
            let parsed = Interval::parse(text).unwrap();
            let canon = parsed.canonical();
            assert_eq!(Interval::parse(&canon).unwrap(), parsed, "{text} -> {canon}");
        }
        assert_eq!(Interval::parse("60 months").unwrap().canonical(), "5 years");
        assert_eq!(Interval::parse("90 minutes").unwrap().canonical(), "1 hour 30 minutes");
        assert_eq!(Interval::default().canonical(), "0 seconds");
    }
}
