//! XEP-0202 entity time: the server's UTC time (`tzo` is always `Z` since the server keeps
//! UTC) in the XEP-0082 format.

use crate::module_api::{
    Element, IqKind, IqRequest, IqTarget, ModuleDescriptor, ModuleError, NoOptions, Registrar, SyncIq, check_section,
    ns,
};
use std::sync::Arc;

/// The module descriptor.
pub static MODULE: ModuleDescriptor = ModuleDescriptor {
    name: "time",
    xeps: &["XEP-0202", "XEP-0082"],
    depends: &[],
    default_enabled: true,
    check_config: check_section::<NoOptions>,
    build,
};

/// Formats microseconds since the epoch as an XEP-0082 DateTime (`2026-11-23T10:00:00.123Z`).
pub fn datetime(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let millis = micros.rem_euclid(1_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's published algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn build(r: &mut Registrar<'_>) -> Result<(), ModuleError> {
    let handler = SyncIq(|_: &IqRequest| {
        let now = datetime(crate::module_api::now_micros());
        Ok(Some(
            Element::new("time", ns::TIME)
                .with_child(Element::new("tzo", ns::TIME).with_text("Z"))
                .with_child(Element::new("utc", ns::TIME).with_text(now)),
        ))
    });
    r.iq(IqKind::Get, IqTarget::Host, ns::TIME, "time", Arc::new(handler))?;
    r.feature(ns::TIME);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::datetime(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(super::datetime(1_795_435_200_123_456), "2026-11-23T12:00:00.123Z");
    }
}
