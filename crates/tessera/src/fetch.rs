//! Reading a document from a file or an http(s) URL, bounded in size and time.

use std::io::Read as _;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// Largest document accepted from a file or URL.
const MAX_BYTES: u64 = 1024 * 1024;

/// A fetched document.
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    /// `None` for a file; for a URL, its `Cache-Control` header if any.
    pub(crate) cache_control: Option<Option<String>>,
}

/// Reads `source` (a path or an http(s) URL): at most 1 MiB, 10 s, no redirects followed.
pub(crate) fn fetch(source: &str) -> anyhow::Result<Fetched> {
    let (body, cache_control) = if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = client.get(source).send().with_context(|| format!("fetching {source}"))?;
        if !response.status().is_success() {
            bail!("fetching {source}: HTTP {}", response.status());
        }
        let cache_control = response.headers().get("cache-control").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        response.take(MAX_BYTES + 1).read_to_end(&mut body).with_context(|| format!("reading {source}"))?;
        (body, Some(cache_control))
    } else {
        let file = std::fs::File::open(source).with_context(|| format!("opening {source}"))?;
        let mut body = Vec::new();
        file.take(MAX_BYTES + 1).read_to_end(&mut body).with_context(|| format!("reading {source}"))?;
        (body, None)
    };
    if body.len() as u64 > MAX_BYTES {
        bail!("{source} is larger than {MAX_BYTES} bytes");
    }
    Ok(Fetched { body, cache_control })
}
