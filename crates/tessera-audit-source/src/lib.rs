//! # tessera-audit-source
//!
//! The audit of a source tree, file by file, for `tessera audit source`:
//! - [`deps`]: the JWT and JOSE libraries a project's lockfiles pin, against a dated table of published
//!   advisories;
//! - [`code`]: JWT misuse in the code itself, found on the syntax tree of a real parser (tree-sitter), so a call
//!   is matched with its arguments and nothing in a comment or a string is mistaken for code.
//!
//! No I/O here: the command line walks the tree and hands each file's text in.
#![warn(missing_docs)]

pub mod code;
pub mod deps;
