//! Geometry from raw numbers: preparation and intersection never panic, and
//! intersection is symmetric.
#![no_main]
use airspace::geometry::{LatLng, Limits, Outline, Volume4D, prepare};
use libfuzzer_sys::fuzz_target;

fn volume(nums: &[f64]) -> Option<Volume4D> {
    let (&kind, rest) = nums.split_first()?;
    let outline = if kind.is_finite() && kind > 0.0 {
        let (c, r) = rest.split_at(rest.len().min(2));
        Outline::Circle { center: LatLng { lat: *c.first()?, lng: *c.get(1)? }, radius_m: *r.first()? }
    } else {
        Outline::Polygon { vertices: rest.chunks_exact(2).map(|p| LatLng { lat: p[0], lng: p[1] }).collect() }
    };
    Some(Volume4D { outline, altitude_lower_m: Some(0.0), altitude_upper_m: Some(100.0), time_start: None, time_end: None })
}

fuzz_target!(|data: &[u8]| {
    let nums: Vec<f64> = data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    let half = nums.len() / 2;
    let (a, b) = (volume(&nums[..half]), volume(&nums[half..]));
    let limits = Limits::default();
    if let (Some(a), Some(b)) = (a, b) {
        if let (Ok(a), Ok(b)) = (prepare(a, &limits), prepare(b, &limits)) {
            assert_eq!(a.intersects(&b), b.intersects(&a));
            let _ = a.covers(&b);
        }
    }
});
