//! The operator console's front end, embedded in the binary from `web/src`
//! and the committed `web/vendor` (Leaflet, the basemap): no file to deploy,
//! no registry to build, no request that leaves the node (the basemap is
//! Natural Earth data shipped in the build). The
//! HTTP side (sessions, the console's own endpoints) lives in `api::console`.

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// One embedded file.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    pub content_type: &'static str,
    /// A strong validator: changes whenever the bytes change.
    pub etag: u64,
    pub bytes: &'static [u8],
}

/// The asset at `path` (relative, no leading slash).
pub fn asset(path: &str) -> Option<Asset> {
    ASSETS
        .iter()
        .find(|(name, ..)| *name == path)
        .map(|&(_, content_type, etag, bytes)| Asset {
            content_type,
            etag,
            bytes,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_embeds_the_page_the_map_library_and_the_basemap() {
        let index = asset("index.html").expect("index.html");
        assert!(index.content_type.starts_with("text/html"));
        let leaflet = asset("leaflet.js").expect("leaflet.js");
        assert!(leaflet.bytes.len() > 100_000, "Leaflet's build, not a stub");
        let basemap = asset("basemap.json").expect("basemap.json");
        let text = std::str::from_utf8(basemap.bytes).expect("utf-8");
        assert!(text.contains("\"FeatureCollection\"") && text.contains("MultiLineString"));
        assert!(asset("nothing.js").is_none());
    }
}
