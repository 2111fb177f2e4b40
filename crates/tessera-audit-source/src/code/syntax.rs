//! What the rules need from a syntax tree, for every grammar: a node's text and line, its named children, the
//! nodes of a kind anywhere below it, and string literals' values.

use std::collections::HashMap;

use tree_sitter::Node;

/// A parsed file.
pub(crate) struct File<'a> {
    pub(crate) path: &'a str,
    pub(crate) text: &'a str,
    pub(crate) root: Node<'a>,
    /// Secrets known to be weak beyond the built-in list (`--wordlist`).
    pub(crate) wordlist: &'a super::Wordlist,
}

impl<'a> File<'a> {
    /// The source text of `node`.
    pub(crate) fn text(&self, node: Node<'_>) -> &'a str {
        self.text.get(node.byte_range()).unwrap_or_default()
    }

    /// The source of `node` as evidence: one line, at most 160 characters.
    pub(crate) fn excerpt(&self, node: Node<'_>) -> String {
        let text: String = self.text(node).split_whitespace().collect::<Vec<_>>().join(" ");
        match text.char_indices().nth(160) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    }

    /// The 1-based line `node` starts on.
    pub(crate) fn line(node: Node<'_>) -> usize {
        node.start_position().row + 1
    }
}

/// Every node below `node` (itself included) whose kind is one of `kinds`, in source order. The walk uses the
/// tree's cursor, not recursion, so deeply nested code cannot exhaust the stack.
pub(crate) fn descendants<'t>(node: Node<'t>, kinds: &[&str]) -> Vec<Node<'t>> {
    let mut found = Vec::new();
    let mut cursor = node.walk();
    loop {
        let current = cursor.node();
        if kinds.contains(&current.kind()) {
            found.push(current);
        }
        if cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.node() == node {
                return found;
            }
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return found;
            }
        }
    }
}

/// The children of `node` in fields `first` and `second`, when it has both (`left` and `right`, `name` and
/// `value`).
pub(crate) fn fields<'t>(node: Node<'t>, first: &str, second: &str) -> Option<(Node<'t>, Node<'t>)> {
    Some((node.child_by_field_name(first)?, node.child_by_field_name(second)?))
}

/// The names bound exactly once, with their values: a name bound twice (two scopes, a reassignment) could mean
/// either value where it is used, so it is left out rather than guessed.
pub(crate) fn declared_once<'a>(bindings: impl IntoIterator<Item = (&'a str, Node<'a>)>) -> HashMap<&'a str, Node<'a>> {
    let mut seen: HashMap<&str, Option<Node<'a>>> = HashMap::new();
    for (name, value) in bindings {
        seen.entry(name).and_modify(|slot| *slot = None).or_insert(Some(value));
    }
    seen.into_iter().filter_map(|(name, value)| Some((name, value?))).collect()
}

/// The value of the constant `node` names (one of `declared_once`'s), and that name; `None` when it names none.
pub(crate) fn named_constant<'t>(
    file: &File<'_>,
    constants: &HashMap<&str, Node<'t>>,
    node: Node<'t>,
) -> Option<(Node<'t>, String)> {
    let name = file.text(node);
    constants.get(name).map(|value| (*value, name.to_owned()))
}

/// The named children of `node` that are not comments.
pub(crate) fn arguments(node: Node<'_>) -> Vec<Node<'_>> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor).filter(|child| child.kind() != "comment").collect()
}

/// A string literal's value, or else the expression's source: what a name-based heuristic looks at.
pub(crate) fn literal_or_text(file: &File<'_>, node: Node<'_>) -> String {
    string_value(file, node).unwrap_or_else(|| file.text(node).to_owned())
}

/// The nearest ancestor of `node` whose kind is one of `kinds`.
pub(crate) fn ancestor<'t>(node: Node<'t>, kinds: &[&str]) -> Option<Node<'t>> {
    let mut current = node.parent();
    while let Some(parent) = current {
        if kinds.contains(&parent.kind()) {
            return Some(parent);
        }
        current = parent.parent();
    }
    None
}

/// The value of a string literal without interpolation (`"x"`, `'x'`, `` `x` `` without `${}`; Python's `"x"`
/// without an `f` prefix; Go's `"x"` and `` `x` ``; Java's, Rust's and C#'s string literals, byte strings included;
/// PHP's `'x'` and `"x"` without variables), with
/// the common escapes undone; `None` for anything else.
pub(crate) fn string_value(file: &File<'_>, node: Node<'_>) -> Option<String> {
    match node.kind() {
        "string"
        | "template_string"
        | "interpreted_string_literal"
        | "raw_string_literal"
        | "string_literal"
        | "encapsed_string" => {}
        _ => return None,
    }
    let mut cursor = node.walk();
    let mut value = String::new();
    for child in node.named_children(&mut cursor) {
        match child.kind() {
            "string_fragment"
            | "string_content"
            | "multiline_string_fragment"
            | "string_literal_content"
            | "interpreted_string_literal_content"
            | "raw_string_literal_content" => {
                value.push_str(file.text(child));
            }
            "escape_sequence" => value.push_str(&unescape(file.text(child))),
            "string_start" | "string_end" => {
                // Python: `f"..."`, `b"..."` and friends are not plain strings.
                if child.kind() == "string_start"
                    && file.text(child).chars().any(|c| matches!(c, 'f' | 'F' | 'b' | 'B'))
                {
                    return None;
                }
            }
            // An interpolation: the value is not known.
            _ => return None,
        }
    }
    Some(value)
}

fn unescape(sequence: &str) -> String {
    match sequence {
        "\\n" => "\n".to_owned(),
        "\\t" => "\t".to_owned(),
        "\\\\" => "\\".to_owned(),
        "\\'" => "'".to_owned(),
        "\\\"" => "\"".to_owned(),
        other => other.trim_start_matches('\\').to_owned(),
    }
}
