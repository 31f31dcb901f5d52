//! The relay's own page at `/` (when `www_dir` has no `index.html`): the
//! `dcaccount:` invite as an inline SVG QR code plus the invite text, made
//! once at start. Delta Chat core (`src/qr.rs`, `decode_account`) takes
//! `dcaccount:<domain>` (the client picks its own credentials; the account
//! is made at the first login) and `dcaccount:https://<domain>/new` (the
//! client asks `POST /new` for them). With a CONNECT entry on the relay
//! (`https_connect`), the page also gives its `https://` proxy URL and QR
//! code, which Delta Chat adds as a proxy (`src/qr.rs`: an `https://` URL
//! with a port and no path); under `auth: password` the URL carries fresh
//! credentials, minted for each page. The title names no product.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::markup::escape;

/// The page's only style sheet; allowed by its hash in the CSP, so that no
/// inline style or script can run.
const STYLE: &str = "body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em;line-height:1.5}svg{width:16em;height:16em;display:block}code{word-break:break-all}";

/// The short invite: `dcaccount:<domain>`.
pub fn invite(domain: &str) -> String {
    format!("dcaccount:{domain}")
}

/// The invite that asks the relay for credentials.
pub fn invite_new(domain: &str) -> String {
    format!("dcaccount:https://{domain}/new")
}

/// `text` as an SVG QR code (the `<svg>` element only, for inline use).
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::new(text.as_bytes())?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build();
    // Drop the XML declaration: the SVG is inline in HTML.
    Ok(match svg.find("<svg") {
        Some(i) => svg[i..].to_owned(),
        None => svg,
    })
}

/// The Content-Security-Policy of the page: nothing loads, only its own
/// style sheet applies.
pub fn csp() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// The page for `domain`; `new_accounts` false says that signing up is
/// closed and shows no invite code; `proxy`: the proxy URL to show.
pub fn page(domain: &str, new_accounts: bool, proxy: Option<&str>) -> String {
    let d = escape(domain);
    let mut h = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{d} chatmail relay</title><style>{STYLE}</style></head><body>\n<h1>{d}</h1>\n<p>This is a chatmail relay: a mail server for Delta Chat and other chatmail apps.</p>\n"
    );
    if new_accounts {
        let inv = invite(domain);
        let qr = qr_svg(&inv).unwrap_or_default();
        let inv_e = escape(&inv);
        let new_e = escape(&invite_new(domain));
        h.push_str(&format!(
            "<h2>Get an account</h2>\n<p>Scan this code with Delta Chat (\"Scan QR code\" on the welcome screen), or open the link on the device with Delta Chat:</p>\n<a href=\"{inv_e}\">{qr}</a>\n<p>Invite: <code>{inv_e}</code></p>\n<p>Or let the relay choose the credentials: <a href=\"{new_e}\"><code>{new_e}</code></a></p>\n"
        ));
    } else {
        h.push_str("<p>This relay does not accept new accounts.</p>\n");
    }
    if let Some(url) = proxy {
        let qr = qr_svg(url).unwrap_or_default();
        let url_e = escape(url);
        h.push_str(&format!(
            "<h2>Where mail ports are blocked</h2>\n<p>Add this proxy in Delta Chat (Settings, Advanced, Proxy: scan or paste it): mail then travels inside one HTTPS connection to this relay.</p>\n{qr}\n<p>Proxy: <code>{url_e}</code></p>\n"
        ));
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_svg_and_escaped_invite() {
        let p = page("chat.example.org", true, None);
        assert!(p.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(p.contains("<code>dcaccount:chat.example.org</code>"));
        assert!(!p.contains("<?xml"));
        let closed = page("chat.example.org", false, None);
        assert!(!closed.contains("Proxy:"));
        let proxied = page(
            "chat.example.org",
            true,
            Some("https://a%40b:p%26@chat.example.org:443"),
        );
        assert!(proxied.contains("<code>https://a%40b:p%26@chat.example.org:443</code>"));
        assert_eq!(proxied.matches("<svg").count(), 2);
        assert!(!closed.contains("<svg"));
        assert!(csp().starts_with("default-src 'none'; style-src 'sha256-"));
    }
}
