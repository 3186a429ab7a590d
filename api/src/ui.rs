//! The page a person reads, under `/ui/`: a few static files compiled into
//! the binary (`api/ui/`). They hold no data: the page asks for the JSON
//! reports itself, with the token its reader types in, so the files are
//! served without a token, whatever the `Accept`.
//!
//! `/ui` and `/ui/` both answer the page (its links to its own files are
//! absolute, and its views live in the URL's fragment), so no redirect is
//! needed. The handler frames them like any answer: `Cache-Control:
//! no-cache` with a strong ETag of the content, so a browser keeps them and
//! asks again with `If-None-Match` (a 304) after an upgrade, as the names
//! carry no version.

use std::sync::OnceLock;

/// One file of the page.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// The name under `/ui/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

impl Asset {
    /// A strong ETag of the content: the same bytes in every build, the
    /// same tag.
    pub fn etag(&self) -> String {
        let digest = audrey_core::rows::fnv1a(self.body.iter().copied());
        format!("\"{digest:016x}\"")
    }
}

/// Every file, the page first.
static ASSETS: [Asset; 3] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../ui/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/style.css"),
    },
];

/// The page itself (`/ui`, `/ui/`, `/ui/index.html`).
pub fn index() -> &'static Asset {
    &ASSETS[0]
}

/// The file `/ui/{name}` names, if there is one.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The ETags, computed once (the files never change while running).
pub fn etag(asset: &'static Asset) -> String {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| ASSETS.iter().map(Asset::etag).collect());
    ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .map(|i| tags[i].clone())
        .unwrap_or_else(|| asset.etag())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_found_by_its_name_and_nothing_else_is() {
        for a in &ASSETS {
            assert!(std::ptr::eq(asset(a.name).unwrap(), a));
            assert!(!a.body.is_empty(), "{}", a.name);
            assert_eq!(etag(a), a.etag());
        }
        for unknown in ["", "..", "../lib.rs", "index.htm", "APP.JS", "app.js.map"] {
            assert!(asset(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn the_page_links_only_its_own_files() {
        let page = std::str::from_utf8(index().body).unwrap();
        for a in &ASSETS[1..] {
            assert!(page.contains(&format!("\"/ui/{}\"", a.name)), "{}", a.name);
        }
        // Nothing from elsewhere: no scheme-relative or absolute URLs.
        for a in &ASSETS {
            // (SVG's namespace is a name, not a place to fetch from.)
            let text = std::str::from_utf8(a.body)
                .unwrap()
                .replace("\"http://www.w3.org/2000/svg\"", "");
            for needle in ["http://", "https://", "src=\"//", "href=\"//"] {
                assert!(!text.contains(needle), "{} has {needle}", a.name);
            }
        }
    }
}
