//! The README's code is the crate guide's doctests, character for
//! character: `src/lib.rs` compiles (and runs) them, so the README's
//! examples cannot drift from the API.

/// The ```` ``` ```` code blocks of `text` (fence lines dropped, an
/// optional `//! ` prefix stripped), in order.
fn blocks(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let Some(line) = line
            .strip_prefix(prefix)
            .or((line == prefix.trim_end()).then_some(""))
        else {
            continue;
        };
        if line.starts_with("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None => cur = Some(String::new()),
            }
        } else if let Some(b) = &mut cur {
            b.push_str(line);
            b.push('\n');
        }
    }
    out
}

#[test]
fn readme_examples_are_the_guides_doctests() {
    let guide = blocks(include_str!("../src/lib.rs"), "//! ");
    let readme = include_str!("../README.md");
    let embedding = &readme[readme.find("## Embedding the server").expect("section")..];
    let embedding = &embedding[..embedding.find("\n## ").unwrap_or(embedding.len())];
    let readme_blocks = blocks(embedding, "");
    assert_eq!(guide.len(), 2, "the guide's two examples");
    assert_eq!(
        readme_blocks, guide,
        "README's \"Embedding the server\" vs src/lib.rs"
    );
}
