//! What preparing one costly polygon takes: a star of N vertices
//! alternating between OUTER and INNER degrees around (0, 0), the shape that
//! makes densifying and the self-intersection check work hardest.
//!
//! cargo run --release -p airspace --example geometry_cost -- [N] [OUTER] [INNER]
//!
//! Prints the time taken and whether it was accepted (run it under
//! `/usr/bin/time -f "%M KB"` for the memory).

use airspace::Timestamp;
use airspace::geometry::*;
fn main() {
    #![allow(clippy::unwrap_used)] // a measuring tool: bad arguments end it
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |s| s.parse().unwrap());
    let outer: f64 = std::env::args().nth(2).map_or(0.17, |s| s.parse().unwrap());
    let inner: f64 = std::env::args()
        .nth(3)
        .map_or(0.0001, |s| s.parse().unwrap());
    let vertices: Vec<LatLng> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            let r = if i % 2 == 0 { outer } else { inner };
            LatLng {
                lat: r * a.sin(),
                lng: r * a.cos(),
            }
        })
        .collect();
    let v = Volume4D {
        outline: Outline::Polygon { vertices },
        altitude_lower_m: Some(0.0),
        altitude_upper_m: Some(100.0),
        time_start: Some(Timestamp(0)),
        time_end: Some(Timestamp(1)),
    };
    let bound = cost(&v);
    let t = std::time::Instant::now();
    let r = prepare(v, &Limits::default());
    use std::io::Write;
    writeln!(
        std::io::stdout(),
        "{n} vertices, {outer}°/{inner}°: outline points ≤ {bound}, {:?}, {:?}",
        t.elapsed(),
        r.as_ref().map(|_| ()).map_err(|e| e.to_string())
    )
    .ok();
}
