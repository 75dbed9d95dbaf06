//! HTML by hand: escaping, and the frame every page shares (navigation, the policy version,
//! the stylesheet and script). Every piece of text that reaches a page goes through [`Html::text`]
//! or [`escape`]: policy text, rule names, paths and what a person typed are never markup.

use std::fmt::Write as _;

/// `text` with `& < > " '` escaped: safe between tags and inside double- or single-quoted
/// attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `text` as a URL path segment (RFC 3986 unreserved characters kept, `/` kept between
/// segments, everything else percent-encoded).
pub fn url_path(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A page being written.
pub struct Html {
    out: String,
}

/// The pages of the navigation bar: (path, title).
const PAGES: [(&str, &str); 4] = [
    ("/matrix", "Access matrix"),
    ("/playground", "Playground"),
    ("/diff", "Last reload"),
    ("/sources", "Policy files"),
];

impl Html {
    /// A page titled `title`, `current` the navigation entry it is (its path), showing
    /// `version`, the policy version it was written from.
    pub fn page(title: &str, current: &str, version: &str) -> Html {
        let mut html = Html {
            out: String::with_capacity(16 * 1024),
        };
        html.raw("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        html.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        html.raw("<title>");
        html.text(title);
        html.raw(" · Verdict</title><link rel=\"stylesheet\" href=\"/assets/ui.css\">");
        html.raw("<script src=\"/assets/ui.js\" defer></script></head><body><header><nav>");
        html.raw("<span class=\"brand\">Verdict</span>");
        for (path, name) in PAGES {
            let here = if path == current {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(html.out, "<a href=\"{path}\"{here}>{name}</a>");
        }
        html.raw("</nav><p class=\"version\">policy version <code id=\"policy-version\">");
        html.text(version);
        html.raw("</code></p></header><main><h1>");
        html.text(title);
        html.raw("</h1>");
        html
    }

    /// Markup written as is: only for literals of this crate.
    pub fn raw(&mut self, markup: &str) -> &mut Self {
        self.out.push_str(markup);
        self
    }

    /// Text, escaped.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.out, text);
        self
    }

    /// `<tag class="class">text</tag>`, the text escaped.
    pub fn element(&mut self, tag: &str, class: &str, text: &str) -> &mut Self {
        if class.is_empty() {
            let _ = write!(self.out, "<{tag}>");
        } else {
            let _ = write!(self.out, "<{tag} class=\"{class}\">");
        }
        self.text(text);
        let _ = write!(self.out, "</{tag}>");
        self
    }

    /// A link to `href` (escaped) with `text`.
    pub fn link(&mut self, href: &str, text: &str) -> &mut Self {
        self.raw("<a href=\"");
        self.text(href);
        self.raw("\">");
        self.text(text);
        self.raw("</a>")
    }

    /// The finished page.
    pub fn finish(mut self) -> String {
        self.raw("</main></body></html>\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_that_could_be_markup_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        let mut page = Html::page("<b>", "/matrix", "v<1>");
        page.text("R.attr.x < 3 && P.id == \"a\"");
        let page = page.finish();
        assert!(!page.contains("<b>") && page.contains("&lt;b&gt;"));
        assert!(page.contains("v&lt;1&gt;"));
        assert!(page.contains("R.attr.x &lt; 3 &amp;&amp; P.id == &quot;a&quot;"));
        assert_eq!(url_path("a b/é?#.yaml"), "a%20b/%C3%A9%3F%23.yaml");
    }
}
